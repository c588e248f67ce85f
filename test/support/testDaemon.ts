/**
 * An isolated, real dockerd for tests.
 *
 * Everything it owns lives in one temp dir (socket, `--data-root`,
 * `--exec-root`, `--pidfile`, `daemon.json`), and it runs in a network
 * namespace of its own (`unshare --net`), with `--iptables=false` and no
 * bridge, so it can never touch the host's `docker0` or firewall. When the
 * scope closes it gets SIGTERM (SIGKILL after a grace), then every process
 * that still names the temp dir (its containerd, container shims) is waited
 * for and killed if need be, mounts under the dir are undone and the dir is
 * removed.
 *
 * Under `CI=true` the tests that need it always run; elsewhere they are
 * skipped only when dockerd is not installed.
 */
import { accessSync, constants } from "node:fs"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as DockerEngine from "../../src/DockerEngine.js"
import * as Dockerd from "../../src/Dockerd.js"
import type { StartError } from "../../src/errors.js"
import * as LocalProcessManager from "../../src/LocalProcessManager.js"
import { type ProcessHandle, ProcessManager } from "../../src/ProcessManager.js"
import * as ReadinessPolicy from "../../src/ReadinessPolicy.js"

/** `scripts/build-images.sh`. */
export const BUILD_IMAGES = fileURLToPath(new URL("../../scripts/build-images.sh", import.meta.url))

/** The tiny image `scripts/build-images.sh busybox` makes. */
export const BUSYBOX_IMAGE = "sandbox-docker/busybox:latest"

/** Whether `dockerd` is on PATH. */
export const dockerdInstalled: boolean = (process.env.PATH ?? "")
  .split(":")
  .filter((dir) => dir.length > 0)
  .some((dir) => {
    try {
      accessSync(Path.join(dir, "dockerd"), constants.X_OK)
      return true
    } catch {
      return false
    }
  })

/**
 * Whether tests on a real dockerd run: always under `CI=true` (a missing
 * dockerd then fails them), elsewhere when dockerd is installed.
 */
export const runsRealDaemon: boolean = process.env.CI === "true" || dockerdInstalled

/**
 * A running test daemon.
 */
export interface TestDaemon {
  /** The temp dir holding everything the daemon owns. */
  readonly dir: string
  /** The Engine's unix socket. */
  readonly socket: string
  /** `unix://<socket>`, for `DOCKER_HOST`. */
  readonly host: string
  /** A client for the Engine. */
  readonly engine: DockerEngine.DockerEngineClient
  /** The dockerd process. */
  readonly process: ProcessHandle
}

/**
 * Options of {@link start}.
 */
export interface TestDaemonOptions {
  /** Written as the daemon's `daemon.json` (for example `runtimes`). */
  readonly config?: Readonly<Record<string, unknown>> | undefined
  /** More dockerd flags. */
  readonly flags?: ReadonlyArray<string> | undefined
}

/** Runs `argv` on the local machine to its end; dies unless it exits 0. */
const run = (argv: readonly [string, ...Array<string>], env?: Record<string, string>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const manager = yield* ProcessManager
      const handle = yield* manager.exec(argv, { env, tailLines: 50 })
      const status = yield* handle.awaitExit
      if (status._tag !== "Exited" || status.code !== 0) {
        const tail = yield* handle.logTail
        return yield* Effect.dieMessage(
          `${argv.join(" ")} ended with ${status._tag === "Exited" ? `exit code ${status.code}` : status.signal}:\n${tail.join("\n")}`
        )
      }
      return yield* handle.logTail
    })
  ).pipe(Effect.orDie, Effect.provide(LocalProcessManager.layer))

/** The temp dir, removed when the scope closes (after the daemon stopped). */
const ownedDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(Path.join(Os.tmpdir(), "sandbox-docker-dockerd-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

/**
 * Starts an isolated dockerd with `Dockerd.start` (its own socket, data-root,
 * exec-root, pidfile and network namespace, no bridge, no iptables) and waits
 * until it is ready. It is stopped, with everything it started, when the
 * scope closes.
 */
export const start = (
  options: TestDaemonOptions = {}
): Effect.Effect<TestDaemon, StartError, Scope.Scope> =>
  Effect.gen(function* () {
    const dir = yield* ownedDir
    const socket = Path.join(dir, "docker.sock")
    const configFile = Path.join(dir, "daemon.json")
    yield* Effect.promise(() => writeFile(configFile, JSON.stringify(options.config ?? {})))
    const daemon = yield* Dockerd.start(
      {
        socket,
        dataRoot: Path.join(dir, "data"),
        execRoot: Path.join(dir, "exec"),
        pidfile: Path.join(dir, "docker.pid"),
        network: "private",
        extraArgs: [
          "--ip6tables=false",
          "--ip-forward=false",
          "--bridge=none",
          `--config-file=${configFile}`,
          "--shutdown-timeout=2",
          ...(options.flags ?? [])
        ]
      },
      ReadinessPolicy.fast.withDeadline("30 seconds")
    ).pipe(Effect.provide(Dockerd.layerNode))
    const engine = yield* DockerEngine.make(socket)
    return { dir, socket, host: `unix://${socket}`, engine, process: daemon.process }
  })

/**
 * Imports {@link BUSYBOX_IMAGE} into the daemon with
 * `scripts/build-images.sh busybox` (busybox-static only: a second or so).
 */
export const importBusybox = (daemon: TestDaemon): Effect.Effect<void> =>
  Effect.asVoid(run(["bash", BUILD_IMAGES, "busybox"], { DOCKER_HOST: daemon.host }))

class Created extends Schema.Class<Created>("Created")({ Id: Schema.String }) {}

/**
 * A container of {@link BUSYBOX_IMAGE} running `sleep 3600` with no network,
 * removed (with whatever runs in it) when the scope closes. Its id.
 */
export const busyboxContainer = (
  daemon: TestDaemon,
  options: { readonly name?: string } = {}
): Effect.Effect<string, DockerEngine.EngineError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const query = options.name === undefined ? "" : `?name=${encodeURIComponent(options.name)}`
      const { Id } = yield* daemon.engine.request("POST", `/containers/create${query}`, {
        body: {
          Image: BUSYBOX_IMAGE,
          Cmd: ["sleep", "3600"],
          HostConfig: { NetworkMode: "none" }
        },
        schema: Created
      })
      yield* daemon.engine.request("POST", `/containers/${Id}/start`)
      return Id
    }),
    (id) => Effect.ignore(daemon.engine.request("DELETE", `/containers/${id}?force=true`))
  )
