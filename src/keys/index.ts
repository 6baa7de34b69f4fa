export { KeyService } from "./key-service.ts";
