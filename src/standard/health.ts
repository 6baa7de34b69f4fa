/**
 * The standard gRPC health protocol (grpc.health.v1.Health), so load balancers, Kubernetes
 * probes, grpc-health-probe and `buf curl` can ask whether Parley is serving without knowing
 * anything about its own API.
 */
import { EventEmitter, on } from "node:events";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.ts";

/**
 * Serving status of the whole server (the empty service name "") and of named services.
 *
 * It lives apart from the RPC handlers so that whoever owns a dependency (the database, the
 * event bus) can flip a status as it comes and goes, and main.ts can mark everything
 * NOT_SERVING on SIGTERM so load balancers drain the server before it stops. The server as a
 * whole starts SERVING, as in grpc-go: reaching the handler at all means it is up.
 */
export class HealthStatus {
  readonly #statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  readonly #changes = new EventEmitter();
  #shutDown = false;

  constructor() {
    // One listener per open Watch stream; there is no leak to warn about.
    this.#changes.setMaxListeners(0);
  }

  /** The status of a service, or undefined when nothing was ever set for it. */
  get(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  /**
   * Records a status and tells every Watch stream of that service. Ignored after shutdown(),
   * so a component that reconnects late cannot advertise a server that is draining.
   */
  set(service: string, status: ServingStatus): void {
    if (!this.#shutDown) this.#update(service, status);
  }

  /** Marks every known service NOT_SERVING for good: the first step of a graceful stop. */
  shutdown(): void {
    this.#shutDown = true;
    for (const service of this.#statuses.keys()) this.#update(service, ServingStatus.NOT_SERVING);
  }

  /**
   * Yields the status of one service now and again whenever it changes, until the signal
   * aborts. A service nobody has set is SERVICE_UNKNOWN rather than an error, as the gRPC
   * spec asks, because it may be registered later and the watcher should then hear of it.
   */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<ServingStatus> {
    try {
      // Subscribe before reading the current status, so that no change falls in between.
      const changes = on(this.#changes, "change", { signal });
      let last = this.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
      yield last;
      for await (const [changed] of changes) {
        const status = this.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (changed !== service || status === last) continue;
        last = status;
        yield status;
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
  }

  #update(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    this.#changes.emit("change", service);
  }
}

/**
 * Registers grpc.health.v1.Health on the router, answering from the given status.
 * Check on an unknown service is NOT_FOUND, per the gRPC health spec.
 */
export function registerHealth(router: ConnectRouter, status: HealthStatus): void {
  router.service(Health, {
    check(request) {
      const current = status.get(request.service);
      if (current === undefined) {
        throw new ConnectError(`unknown service ${JSON.stringify(request.service)}`, Code.NotFound);
      }
      return { status: current };
    },
    async *watch(request, context) {
      for await (const current of status.watch(request.service, context.signal)) {
        yield { status: current };
      }
    },
  });
}
