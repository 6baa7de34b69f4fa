export { UserDirectory } from "./user-directory.ts";
export { UserService } from "./user-service.ts";
export { AccountEraser, type AccountEraserOptions, type ErasureFaults } from "./account-eraser.ts";
export { createErasureGuard, ErasureGate } from "./erasure-gate.ts";
