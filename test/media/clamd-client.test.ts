/**
 * The clamd client on its own: CLAMD_URL parsing and its config errors, every kind of INSTREAM
 * answer, the bytes it puts on the wire (checked by a loopback listener that records them), and
 * chunking against the real clamd (a signature split across chunks is still found).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { ClamdClient, ClamdError, parseClamdUrl, parseInstreamReply, type ClamdAddress } from "../../src/media/clamd-client.ts";
import { EICAR_SIGNATURE_NAME, eicar, requireClamd, startClamd, type TestClamd } from "../helpers/clamd.ts";

/** Awaits the promise and asserts it rejects with a ClamdError of that kind; returns it. */
async function expectFailure(promise: Promise<unknown>, failure: ClamdError["failure"]): Promise<ClamdError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ClamdError, `expected a ClamdError, got ${String(error)}`);
    assert.equal(error.failure, failure, error.message);
    return error;
  }
  assert.fail(`expected a ${failure} failure, but it succeeded`);
}

describe("clamd client", () => {
  describe("CLAMD_URL", () => {
    it("takes tcp://host:port (3310 by default) and unix:///path", () => {
      assert.deepEqual(parseClamdUrl("tcp://127.0.0.1:3310"), { kind: "tcp", host: "127.0.0.1", port: 3310 });
      assert.deepEqual(parseClamdUrl("tcp://clamav.internal"), { kind: "tcp", host: "clamav.internal", port: 3310 });
      assert.deepEqual(parseClamdUrl("tcp://[::1]:3311"), { kind: "tcp", host: "::1", port: 3311 });
      assert.deepEqual(parseClamdUrl("unix:///run/clamav/clamd.ctl"), { kind: "unix", path: "/run/clamav/clamd.ctl" });
    });

    it("stops the server with a message naming CLAMD_URL when it is wrong", () => {
      for (const bad of ["http://127.0.0.1:3310", "127.0.0.1:3310", "tcp://", "tcp://host:0", "tcp://host:3310/path", "unix://host/clamd.ctl", "unix:///", "not a url"]) {
        assert.throws(() => loadConfig({ CLAMD_URL: bad }), (e: Error) => e instanceof ConfigError && e.message.startsWith("CLAMD_URL "), bad);
      }
    });

    it("reads the timeouts and fail-open switch, failing closed by default", () => {
      const defaults = loadConfig({}).malwareScan;
      assert.deepEqual(defaults, { clamd: null, connectTimeoutMs: 2000, scanTimeoutMs: 30000, failOpen: false });
      const set = loadConfig({ CLAMD_URL: "unix:///run/clamav/clamd.ctl", CLAMD_CONNECT_TIMEOUT_MS: "500", CLAMD_SCAN_TIMEOUT_MS: "9000", CLAMD_FAIL_OPEN: "true" }).malwareScan;
      assert.deepEqual(set, { clamd: { kind: "unix", path: "/run/clamav/clamd.ctl" }, connectTimeoutMs: 500, scanTimeoutMs: 9000, failOpen: true });
      assert.throws(() => loadConfig({ CLAMD_FAIL_OPEN: "yes" }), /CLAMD_FAIL_OPEN/);
      assert.throws(() => loadConfig({ CLAMD_SCAN_TIMEOUT_MS: "0" }), /CLAMD_SCAN_TIMEOUT_MS/);
      assert.throws(() => loadConfig({ CLAMD_CONNECT_TIMEOUT_MS: "soon" }), /CLAMD_CONNECT_TIMEOUT_MS/);
    });
  });

  describe("INSTREAM answers", () => {
    it("reads clean and infected verdicts", () => {
      assert.deepEqual(parseInstreamReply("stream: OK"), { clean: true });
      assert.deepEqual(parseInstreamReply("stream: Win.Test.EICAR_HDB-1 FOUND"), { clean: false, signature: "Win.Test.EICAR_HDB-1" });
      assert.deepEqual(parseInstreamReply("stream: Some Name With Spaces.UNOFFICIAL FOUND\n"), { clean: false, signature: "Some Name With Spaces.UNOFFICIAL" });
    });

    it("turns every other answer into a failure of the right kind", () => {
      assert.throws(() => parseInstreamReply("INSTREAM size limit exceeded. ERROR"), (e: ClamdError) => e.failure === "size_limit");
      for (const reply of ["stream: Can't allocate memory ERROR", "UNKNOWN COMMAND", "COMMAND READ TIMED OUT", "stream: FOUND", "", "PONG"]) {
        assert.throws(() => parseInstreamReply(reply), (e: ClamdError) => e instanceof ClamdError && e.failure === "error", JSON.stringify(reply));
      }
    });
  });

  describe("on the wire (a loopback listener in clamd's place)", () => {
    let listener: net.Server;
    let address: ClamdAddress;
    /** What a connection does each time bytes arrive (`received()` joins them all: small tests only). */
    let respond: (received: () => Buffer, total: number, socket: net.Socket) => void;
    let lastReceived: () => Buffer;
    before(async () => {
      listener = net.createServer((socket) => {
        const chunks: Buffer[] = [];
        let total = 0;
        const received = () => Buffer.concat(chunks);
        lastReceived = received;
        socket.on("data", (chunk) => {
          chunks.push(chunk);
          total += chunk.length;
          respond(received, total, socket);
        });
        socket.on("error", () => undefined);
      });
      await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
      address = { kind: "tcp", host: "127.0.0.1", port: (listener.address() as net.AddressInfo).port };
    });
    after(() => {
      listener.close();
    });

    /** Answers once the zero-length chunk that ends the stream has arrived. */
    const answerAtEnd = (answer: string | null) => (received: () => Buffer, total: number, socket: net.Socket) => {
      if (total >= 14 && received().subarray(-4).equals(Buffer.alloc(4))) {
        if (answer === null) socket.destroy();
        else socket.end(answer);
      }
    };

    it("sends zINSTREAM, chunks of at most chunkBytes each after its big-endian length, then a zero-length chunk", async () => {
      respond = answerAtEnd("stream: OK\0");
      const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
      const client = new ClamdClient({ address, connectTimeoutMs: 1000, scanTimeoutMs: 2000, chunkBytes: 300 });
      assert.deepEqual(await client.scan(data), { clean: true });
      const wire = lastReceived();
      assert.equal(wire.subarray(0, 10).toString("latin1"), "zINSTREAM\0");
      const lengths: number[] = [];
      const body: Buffer[] = [];
      let at = 10;
      for (;;) {
        const length = wire.readUInt32BE(at);
        at += 4;
        if (length === 0) break;
        lengths.push(length);
        body.push(wire.subarray(at, at + length));
        at += length;
      }
      assert.equal(at, wire.length, "nothing after the end marker");
      assert.deepEqual(lengths, [300, 300, 300, 100]);
      assert.deepEqual(Buffer.concat(body), data);
    });

    it("takes an answer that ends with the connection instead of a NUL", async () => {
      respond = answerAtEnd("stream: Eicar-Test FOUND");
      const client = new ClamdClient({ address, connectTimeoutMs: 1000, scanTimeoutMs: 2000 });
      assert.deepEqual(await client.scan(Buffer.from("x")), { clean: false, signature: "Eicar-Test" });
    });

    it("stops sending when clamd answers early (a size limit) and reports it", async () => {
      respond = (_received, total, socket) => {
        if (total > 100_000 && !socket.writableEnded) socket.end("INSTREAM size limit exceeded. ERROR\0");
      };
      const client = new ClamdClient({ address, connectTimeoutMs: 1000, scanTimeoutMs: 5000, chunkBytes: 16 * 1024 });
      await expectFailure(client.scan(Buffer.alloc(32 * 1024 * 1024)), "size_limit");
    });

    it("fails when clamd hangs up without an answer, rambles, or says nothing in time", async () => {
      const client = new ClamdClient({ address, connectTimeoutMs: 1000, scanTimeoutMs: 300 });
      respond = answerAtEnd(null);
      await expectFailure(client.scan(Buffer.from("x")), "error");
      respond = (_received, _total, socket) => {
        if (!socket.writableEnded) socket.write(Buffer.alloc(8192, 0x41));
      };
      await expectFailure(client.scan(Buffer.from("x")), "error");
      respond = () => undefined;
      const started = performance.now();
      await expectFailure(client.scan(Buffer.from("x")), "timeout");
      assert.ok(performance.now() - started >= 290, "waited for the scan timeout");
    });

    it("reports a refused connection as unreachable, and a cancelled scan as cancelled", async () => {
      const closed = net.createServer();
      await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
      const port = (closed.address() as net.AddressInfo).port;
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      const nobody = new ClamdClient({ address: { kind: "tcp", host: "127.0.0.1", port }, connectTimeoutMs: 1000, scanTimeoutMs: 1000 });
      await expectFailure(nobody.scan(Buffer.from("x")), "unreachable");
      await expectFailure(new ClamdClient({ address: { kind: "unix", path: "/nonexistent/clamd.ctl" }, connectTimeoutMs: 1000, scanTimeoutMs: 1000 }).scan(Buffer.from("x")), "unreachable");

      respond = () => undefined;
      const client = new ClamdClient({ address, connectTimeoutMs: 1000, scanTimeoutMs: 5000 });
      const controller = new AbortController();
      const scan = client.scan(Buffer.from("x"), controller.signal);
      setTimeout(() => controller.abort(), 50);
      const error = await expectFailure(scan, "error");
      assert.match(error.message, /cancelled/);
    });
  });

  describe("against the real clamd", () => {
    let clamd: TestClamd;
    before(async function () {
      requireClamd(this);
      clamd = await startClamd();
    });
    after(async () => {
      await clamd?.stop();
    });

    it("finds a signature split across chunk boundaries, and answers PING", async () => {
      const data = Buffer.concat([Buffer.alloc(1000, 0x20), eicar(), Buffer.alloc(1000, 0x20)]);
      for (const chunkBytes of [1, 7, 64, 1024 * 1024]) {
        const client = new ClamdClient({ address: clamd.address, connectTimeoutMs: 1000, scanTimeoutMs: 10_000, chunkBytes });
        const verdict = await client.scan(data);
        assert.equal(verdict.clean, false, `chunks of ${chunkBytes}`);
        assert.match((verdict as { signature: string }).signature, new RegExp(`^${EICAR_SIGNATURE_NAME}`));
      }
      const client = new ClamdClient({ address: clamd.address, connectTimeoutMs: 1000, scanTimeoutMs: 10_000 });
      assert.deepEqual(await client.scan(Buffer.alloc(3 * 1024 * 1024, 0x20)), { clean: true });
      assert.equal(await client.ping(), true);
    });
  });
});
