/**
 * A scripted dockerd for tests under `TestClock`: `Dockerd.start`,
 * `Dockerd.layer` and `Supervisor.run` run unchanged on it, in virtual time,
 * and fail with their real typed errors.
 *
 * ```ts
 * const fiber = yield* Effect.fork(Dockerd.start({ socket: "/run/test/docker.sock" }))
 * yield* TestClock.adjust("3 seconds")
 * const daemon = yield* Fiber.join(fiber) // daemon.timeToReadyMs === 3000
 * // provided by TestDocker.layer({ readyAfter: "3 seconds" })
 * ```
 *
 * The layer holds a `TestProcessManager` whose dockerd (any argv with a
 * `--host=unix://` flag) follows the script, a `DockerHost` that skips the
 * machine's preflight and clean-up, and, under that host, a file system and
 * Engine and containerd clients that answer from the script: the socket
 * file exists from its `socket` phase on, `/_ping` answers as its `ping`
 * phases say, containerd as its `containerd` phases say.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { SystemError } from "@effect/platform/Error"
import * as Path from "node:path"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Containerd from "./Containerd.js"
import * as DockerEngine from "./DockerEngine.js"
import * as DockerHost from "./DockerHost.js"
import { type ProbeFailure, ProbeNotYet } from "./errors.js"
import { ProcessManager } from "./ProcessManager.js"
import * as TestProcessManager from "./TestProcessManager.js"

/**
 * The life of a scripted dockerd.
 *
 * - `readyAfter`: it serves from then on. Its socket and its containerd
 *   appear at 100 ms (or then, if sooner); `/_ping` is held from then until
 *   it serves, then answered; it logs its `Docker daemon` and `API listen
 *   on` lines as it starts serving.
 * - `output` and `exit`: what it prints and when, and when it exits on its
 *   own (`{ at, code }` or `{ at, signal }`); after ready, that is a death.
 * - neither: it never gets ready (and never exits until stopped).
 *
 * `probes` replaces the phases of the probes it names (`socket`, `ping`,
 * `containerd`, `info`, `version`: see `TestProcessManager.ProbePhase`).
 *
 * @since 0.1.0
 * @category models
 */
export interface DockerdScript {
  readonly readyAfter?: Duration.DurationInput | undefined
  readonly output?: ReadonlyArray<TestProcessManager.ScriptedOutput> | undefined
  readonly exit?: TestProcessManager.ProcessScript["exit"]
  readonly onTerm?: TestProcessManager.ProcessScript["onTerm"]
  readonly probes?: TestProcessManager.ProcessScript["probes"]
}

/**
 * The version a scripted dockerd answers with.
 *
 * @since 0.1.0
 * @category constants
 */
export const SERVER_VERSION = "0.0.0-test"

/**
 * The Engine API version a scripted dockerd answers with.
 *
 * @since 0.1.0
 * @category constants
 */
export const API_VERSION = "1.41"

/**
 * The storage driver a scripted dockerd logs.
 *
 * @since 0.1.0
 * @category constants
 */
export const STORAGE_DRIVER = "overlay2"

/** The flag every dockerd argv carries, naming its socket. */
const HOST_FLAG = "--host=unix://"

/** The unix socket a dockerd argv names. */
const socketOf = (argv: ReadonlyArray<string>): string | undefined =>
  argv.find((arg) => arg.startsWith(HOST_FLAG))?.slice(HOST_FLAG.length)

/** The exec-root a dockerd argv names, if it does. */
const execRootOf = (argv: ReadonlyArray<string>): string | undefined =>
  argv.find((arg) => arg.startsWith("--exec-root="))?.slice("--exec-root=".length)

/** Whether an argv is a dockerd's (wrapped for its network or not). */
const isDockerd = (argv: ReadonlyArray<string>): boolean => socketOf(argv) !== undefined

/** A script as the TestProcessManager takes it, for a dockerd started with `argv`. */
const toProcessScript = (
  script: DockerdScript,
  argv: ReadonlyArray<string>
): TestProcessManager.ProcessScript => {
  const { readyAfter } = script
  const serving =
    readyAfter === undefined
      ? undefined
      : (() => {
          const at = Duration.decode(readyAfter)
          const socketAt = Duration.min(at, Duration.millis(100))
          const line = (msg: string, extra = "") =>
            `time="2026-01-01T00:00:00.000000000Z" level=info msg="${msg}"${extra}\n`
          return {
            probes: {
              socket: [{ from: socketAt, answer: "ok" as const }],
              // dockerd holds a `/_ping` on its socket until it serves.
              ping: [
                { from: socketAt, answer: "hang" as const },
                { from: at, answer: "ok" as const }
              ],
              // Its containerd serves before it does.
              containerd: [{ from: socketAt, answer: "ok" as const }],
              info: [{ from: at, answer: "ok" as const }],
              version: [{ from: at, answer: "ok" as const }]
            },
            output: [
              {
                // Logged just before it serves, as dockerd does.
                at: Duration.subtract(at, Duration.min(at, Duration.millis(1))),
                text: line(
                  "Docker daemon",
                  ` commit=test storage-driver=${STORAGE_DRIVER} version=${SERVER_VERSION}`
                )
              },
              { at, text: line(`API listen on ${socketOf(argv) ?? "/var/run/docker.sock"}`) }
            ]
          }
        })()
  return {
    output: [...(serving?.output ?? []), ...(script.output ?? [])],
    exit: script.exit,
    onTerm: script.onTerm,
    probes: { ...serving?.probes, ...script.probes }
  }
}

/** The phase a probe of `script` is in `elapsed` ms after the spawn. */
const phaseOf = (
  script: TestProcessManager.ProcessScript,
  name: string,
  elapsed: number
): TestProcessManager.ProbeAnswer => {
  let answer: TestProcessManager.ProbeAnswer = "absent"
  for (const phase of script.probes?.[name] ?? []) {
    if (Duration.toMillis(phase.from) <= elapsed) answer = phase.answer
  }
  return answer
}

/** Milliseconds after the spawn when `name` first answers other than "not there". */
const firstThereAt = (script: TestProcessManager.ProcessScript, name: string): number | undefined =>
  (script.probes?.[name] ?? [])
    .filter((phase) => phase.answer !== "absent" && phase.answer !== "refused")
    .map((phase) => Duration.toMillis(phase.from))
    .sort((a, b) => a - b)[0]

/** One scripted dockerd as the test layers see it. */
interface Scripted {
  readonly info: TestProcessManager.ScriptedProcessInfo
  readonly script: TestProcessManager.ProcessScript
}

/** The probe failure of a scripted answer as an Engine error. */
const engineError =
  (socket: string, path: string) =>
  (failure: ProbeFailure): DockerEngine.EngineError =>
    failure._tag === "ProbeFailed"
      ? new DockerEngine.EngineBadAnswer({ socket, path, reason: failure.reason })
      : new DockerEngine.EngineUnreachable({
          socket,
          code:
            failure._tag === "ProbeNotYet" && failure.reason === "no socket"
              ? "ENOENT"
              : "ECONNREFUSED",
          reason: failure.message
        })

/** The probe failure of a scripted answer as a containerd error. */
const containerdError =
  (address: string) =>
  (failure: ProbeFailure): Containerd.ContainerdError =>
    failure._tag === "ProbeFailed"
      ? new Containerd.ContainerdBadAnswer({ address, reason: failure.reason })
      : new Containerd.ContainerdUnreachable({
          address,
          code:
            failure._tag === "ProbeNotYet" && failure.reason === "no socket"
              ? "ENOENT"
              : "ECONNREFUSED",
          reason: failure.message
        })

/**
 * The scripted ProcessManager, its `TestProcessManager` face, and a
 * `DockerHost` whose file system and clients answer from the script (see
 * the module's description). `script` may be a function of the start (its
 * `previous` counts the dockerds started before: a restart gets another
 * script). `rules` script other commands.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  script: DockerdScript | ((context: TestProcessManager.ScriptContext) => DockerdScript),
  options: { readonly rules?: ReadonlyArray<TestProcessManager.ScriptRule> | undefined } = {}
): Layer.Layer<ProcessManager | DockerHost.DockerHost | TestProcessManager.TestProcessManager> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      // The scripts given, by the argv they were made for (the very array
      // the manager keeps as the process's argv).
      const scripts = new Map<ReadonlyArray<string>, TestProcessManager.ProcessScript>()
      const dockerd: TestProcessManager.ScriptRule = {
        match: isDockerd,
        script: (context) => {
          const made = toProcessScript(
            typeof script === "function" ? script(context) : script,
            context.argv
          )
          scripts.set(context.argv, made)
          return made
        }
      }
      const [manager, test] = yield* TestProcessManager.make([dockerd, ...(options.rules ?? [])])

      /** The newest scripted dockerd that `pick` accepts. */
      const newest = (pick: (argv: ReadonlyArray<string>) => boolean) =>
        Effect.map(test.processes, (all): Option.Option<Scripted> => {
          for (let i = all.length - 1; i >= 0; i--) {
            const info = all[i]!
            const made = scripts.get(info.argv)
            if (made !== undefined && pick(info.argv)) return Option.some({ info, script: made })
          }
          return Option.none()
        })
      const bySocket = (socket: string) => newest((argv) => socketOf(argv) === socket)
      const byContainerd = (address: string) =>
        Effect.flatMap(
          newest((argv) => execRootOf(argv) === Path.dirname(Path.dirname(address))),
          (found) => (Option.isSome(found) ? Effect.succeed(found) : newest(() => true))
        )
      const elapsedFor = (scripted: Scripted) =>
        Effect.map(Clock.currentTimeMillis, (now) => now - scripted.info.startedAt)

      /** The answer of probe `name` of the dockerd `found`, as its script says. */
      const ask = (found: Effect.Effect<Option.Option<Scripted>>, name: string) =>
        Effect.flatMap(found, (scripted): Effect.Effect<unknown, ProbeFailure> =>
          Option.isNone(scripted)
            ? Effect.fail(new ProbeNotYet({ probe: name, reason: "no socket" }))
            : test.probe(scripted.value.info.pid, name).run
        )

      const notFound = (method: string, path: string) =>
        new SystemError({
          reason: "NotFound",
          module: "FileSystem",
          method,
          pathOrDescriptor: path,
          description: "no such file or directory (scripted)"
        })
      const socketInfo: FileSystem.File.Info = {
        type: "Socket",
        mtime: Option.none(),
        atime: Option.none(),
        birthtime: Option.none(),
        dev: 0,
        ino: Option.none(),
        mode: 0o140660,
        nlink: Option.none(),
        uid: Option.none(),
        gid: Option.none(),
        rdev: Option.none(),
        size: FileSystem.Size(0),
        blksize: Option.none(),
        blocks: Option.none()
      }
      const fileSystem = FileSystem.makeNoop({
        // The socket exists while its dockerd runs, from its `socket` phase on.
        stat: (path) =>
          Effect.flatMap(bySocket(path), (scripted) =>
            Option.isNone(scripted) || scripted.value.info.status._tag !== "Running"
              ? Effect.fail(notFound("stat", path))
              : Effect.flatMap(elapsedFor(scripted.value), (elapsed) => {
                  const answer = phaseOf(scripted.value.script, "socket", elapsed)
                  return answer === "absent" || answer === "refused"
                    ? Effect.fail(notFound("stat", path))
                    : Effect.succeed(socketInfo)
                })
          ),
        // A socket in the directory is created at its `socket` phase.
        watch: (directory) =>
          Stream.unwrap(
            Effect.gen(function* () {
              const now = yield* Clock.currentTimeMillis
              const all = yield* test.running
              const creations = all.flatMap((info) => {
                const socket = socketOf(info.argv)
                const made = scripts.get(info.argv)
                if (socket === undefined || made === undefined) return []
                if (Path.dirname(socket) !== directory) return []
                const at = firstThereAt(made, "socket")
                if (at === undefined || info.startedAt + at <= now) return []
                return [
                  Stream.fromEffect(
                    Effect.as(
                      Effect.sleep(info.startedAt + at - now),
                      FileSystem.WatchEventCreate({ path: socket })
                    )
                  )
                ]
              })
              return Stream.concat(
                Stream.mergeAll(creations, { concurrency: "unbounded" }),
                Stream.never
              )
            })
          )
      })

      const engines = DockerEngine.layerConnectorTest((socket) => {
        const answer = <A>(name: string, path: string, decode: (value: unknown) => A) =>
          Effect.map(ask(bySocket(socket), name), decode).pipe(
            Effect.mapError(engineError(socket, path))
          )
        return {
          ping: answer("ping", "/_ping", (value) =>
            value instanceof DockerEngine.PingAnswer
              ? value
              : new DockerEngine.PingAnswer({
                  apiVersion: API_VERSION,
                  serverVersion: SERVER_VERSION
                })
          ),
          version: answer("version", "/version", (value) =>
            value instanceof DockerEngine.VersionAnswer
              ? value
              : new DockerEngine.VersionAnswer({ Version: SERVER_VERSION, ApiVersion: API_VERSION })
          ),
          info: answer("info", "/info", (value) =>
            value instanceof DockerEngine.InfoAnswer
              ? value
              : new DockerEngine.InfoAnswer({
                  ServerVersion: SERVER_VERSION,
                  Driver: STORAGE_DRIVER
                })
          )
        }
      })

      const containerds = Containerd.layerConnectorTest((address) => ({
        version: Effect.map(ask(byContainerd(address), "containerd"), (value) =>
          value instanceof Containerd.ContainerdVersion
            ? value
            : new Containerd.ContainerdVersion({ version: "v0.0.0-test", revision: "test" })
        ).pipe(Effect.mapError(containerdError(address))),
        // Connected ahead once containerd accepts (its phase is past "not there").
        warm: Effect.flatMap(byContainerd(address), (scripted) =>
          Option.isNone(scripted) || scripted.value.info.status._tag !== "Running"
            ? Effect.succeed(false)
            : Effect.map(elapsedFor(scripted.value), (elapsed) => {
                const answer = phaseOf(scripted.value.script, "containerd", elapsed)
                return answer !== "absent" && answer !== "refused"
              })
        )
      }))

      const host = DockerHost.layerTest.pipe(
        Layer.provide(
          Layer.mergeAll(Layer.succeed(FileSystem.FileSystem, fileSystem), engines, containerds)
        )
      )
      return Layer.merge(
        host,
        Layer.succeedContext(
          Context.make(ProcessManager, manager).pipe(
            Context.add(TestProcessManager.TestProcessManager, test)
          )
        )
      )
    })
  )
