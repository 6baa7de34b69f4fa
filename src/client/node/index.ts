/** The Node-only parts of the SDK (they use node: modules, so browser bundles leave them out). */
export { FileStore } from "./file-store.ts";
