export { ConnectionService } from "./connection-service.ts";
