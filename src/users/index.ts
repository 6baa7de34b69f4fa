export { UserDirectory } from "./user-directory.ts";
export { UserService } from "./user-service.ts";
