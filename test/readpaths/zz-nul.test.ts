import { randomUUID } from "node:crypto";
import { startTestServer, newUsers } from "../helpers/test-server.ts";
import { createGroup } from "../helpers/fixtures.ts";
describe("nul probe", () => {
  it("sends a NUL", async () => {
    const server = await startTestServer();
    const [a, b, c] = (await newUsers(server, 3, "nul")) as string[];
    for (const p of ["connect", "grpc"] as const) {
      const A = server.clientsFor(a!, p);
      const g = await createGroup(A, [b!, c!]);
      const r = await A.messages.sendMessage({ conversationId: g.id, clientMessageId: randomUUID(), content: { case: "text", value: "a\u0000b" } }).then(() => "ok", (e: Error) => e.message);
      console.error(p, r);
      const e = await A.messages.sendMessage({ conversationId: g.id, clientMessageId: randomUUID(), content: { case: "text", value: "fine" } });
      const r2 = await A.messages.editMessage({ conversationId: g.id, seq: e.message!.seq, content: { case: "text", value: "x\u0000y" } }).then(() => "ok", (err: Error) => err.message);
      console.error(p, "edit", r2);
    }
    await server.stop();
  });
});
