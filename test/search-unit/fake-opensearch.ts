/**
 * A local HTTP endpoint that records every request the OpenSearch backend makes and answers
 * the way OpenSearch 2.x documents it: index templates, indices and aliases, and _bulk with
 * external versioning (a write whose version is not above the stored one — or, for
 * external_gte, below it — is a 409 version_conflict_engine_exception for that item). Searches
 * are recorded and answered from `searchResponses`, since evaluating query DSL is OpenSearch's
 * job; the tests assert the DSL we send. No OpenSearch server can run on this machine.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** Parsed JSON body, or the parsed lines of an NDJSON body, or null. */
  body: unknown;
}

export interface StoredDoc {
  version: number;
  routing: string | undefined;
  source: Record<string, unknown>;
}

export interface FakeOpenSearch {
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** index → id → document. */
  readonly indices: Map<string, Map<string, StoredDoc>>;
  /** alias → indices. */
  readonly aliases: Map<string, Set<string>>;
  readonly templates: Map<string, unknown>;
  /** Answers for the next _search requests, in order. */
  readonly searchResponses: object[];
  /** The status the next bulk items get instead of their real outcome (e.g. 429), while set. */
  failBulkItemsWith: number | null;
  close(): Promise<void>;
}

export async function startFakeOpenSearch(): Promise<FakeOpenSearch> {
  const fake = {
    requests: [] as RecordedRequest[],
    indices: new Map<string, Map<string, StoredDoc>>(),
    aliases: new Map<string, Set<string>>(),
    templates: new Map<string, unknown>(),
    searchResponses: [] as object[],
    failBulkItemsWith: null as number | null,
  };

  function addAlias(index: string, alias: string) {
    if (!fake.aliases.has(alias)) fake.aliases.set(alias, new Set());
    fake.aliases.get(alias)!.add(index);
  }

  function bulkItem(action: Record<string, any>, source: Record<string, unknown>) {
    const index: string = action._index;
    const docs = fake.indices.get(index);
    if (!docs) return { status: 404, error: { type: "index_not_found_exception" } };
    if (fake.failBulkItemsWith !== null) return { status: fake.failBulkItemsWith, error: { type: "es_rejected_execution_exception" } };
    const current = docs.get(action._id);
    const accepts = action.version_type === "external_gte" ? (v: number) => v >= current!.version : (v: number) => v > current!.version;
    if (current && !accepts(action.version)) {
      return { status: 409, error: { type: "version_conflict_engine_exception", reason: `current version [${current.version}] is higher or equal` } };
    }
    docs.set(action._id, { version: action.version, routing: action.routing, source });
    return { status: current ? 200 : 201, result: current ? "updated" : "created", _version: action.version };
  }

  function route(method: string, path: string, body: any): [number, unknown] {
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "_index_template" && (method === "PUT" || method === "POST")) {
      fake.templates.set(parts[1]!, body);
      return [200, { acknowledged: true }];
    }
    if (parts[0] === "_alias") {
      const indices = fake.aliases.get(parts[1]!) ?? new Set();
      if (indices.size === 0) return [404, { error: "alias missing", status: 404 }];
      return [200, Object.fromEntries([...indices].map((index) => [index, { aliases: { [parts[1]!]: {} } }]))];
    }
    if (parts[0] === "_aliases" && method === "POST") {
      for (const action of body.actions) {
        if (action.add) addAlias(action.add.index, action.add.alias);
        if (action.remove) fake.aliases.get(action.remove.alias)?.delete(action.remove.index);
      }
      return [200, { acknowledged: true }];
    }
    if (parts[0] === "_bulk" && method === "POST") {
      const items = [];
      for (let i = 0; i < body.length; i += 2) {
        const [kind, action] = Object.entries(body[i] as Record<string, any>)[0]!;
        items.push({ [kind]: { _index: action._index, _id: action._id, ...bulkItem(action, body[i + 1]) } });
      }
      return [200, { took: 1, errors: items.some((item) => Object.values(item)[0]!.status >= 300), items }];
    }
    if (parts[1] === "_search") return [200, fake.searchResponses.shift() ?? { hits: { hits: [] } }];
    if (parts.length === 1 && method === "PUT") {
      fake.indices.set(parts[0]!, new Map());
      for (const alias of Object.keys(body?.aliases ?? {})) addAlias(parts[0]!, alias);
      return [200, { acknowledged: true, index: parts[0] }];
    }
    if (parts.length === 1 && method === "HEAD") return [fake.indices.has(parts[0]!) ? 200 : 404, null];
    if (parts.length === 1 && method === "DELETE") {
      for (const index of parts[0]!.split(",")) {
        fake.indices.delete(index);
        for (const members of fake.aliases.values()) members.delete(index);
      }
      return [200, { acknowledged: true }];
    }
    return [400, { error: `the fake does not know ${method} ${path}` }];
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const url = new URL(req.url ?? "/", "http://fake");
      const ndjson = url.pathname.endsWith("/_bulk");
      const body = text === "" ? null : ndjson ? text.trim().split("\n").map((line) => JSON.parse(line)) : JSON.parse(text);
      fake.requests.push({ method: req.method ?? "GET", path: url.pathname, query: url.searchParams, body });
      const [status, answer] = route(req.method ?? "GET", url.pathname, body);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(answer === null || req.method === "HEAD" ? undefined : JSON.stringify(answer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return Object.assign(fake, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}
