/**
 * The ProcessManager inside a running container, through the Docker Engine
 * exec API on the host engine's unix socket. Same interface and semantics as
 * `LocalProcessManager`.
 *
 * How each part maps onto the Engine:
 *
 * - **start**: `POST /containers/{id}/exec`, then `POST /exec/{id}/start` on an
 *   upgraded (hijacked) connection: stdin is written to it and half-closed,
 *   stdout and stderr come back multiplexed in 8-byte-header frames.
 * - **pid, missing binary**: the argv runs under a fixed shell script, given
 *   the argv as positional parameters (never interpolated): it looks the
 *   binary up on the container's `PATH` the way `execvp` does, prints one line
 *   with its own pid (or with the `PATH` it searched), then `exec "$@"`. So
 *   the pid is the command's pid inside the container, and a missing binary
 *   fails with `BinaryNotFound` before anything runs.
 * - **exit**: `GET /exec/{id}/json` until `Running` is false and `ExitCode`
 *   is set: at once when the output stream ends, and every 50-500 ms while it
 *   is open (a child that inherited the output keeps it open; the Engine
 *   then holds it up to 2 s after the exit).
 * - **signals**: the exec API has none; another exec runs `kill -s SIG -PID`
 *   in the container (every exec is a session leader there, so this reaches
 *   the process's whole group, as the local manager does).
 *
 * The Engine reports a signal death as exit code `128 + n`, exactly as it
 * reports `exit 128+n`. This manager tells them apart where it can: the code
 * reads as `Signaled` when it matches a signal this manager delivered to the
 * process (through `signal` or when its scope closed), as `Exited` otherwise.
 * A process that dies with its container (container stopped, killed or
 * removed) reads as `Signaled` too: the kernel ends it with SIGKILL.
 *
 * The Engine handles the exits of one container's processes in order, and
 * while it holds an ended process's output open (see above) it reports none
 * of that container's later exits: they can arrive up to 2 s late.
 *
 * The container needs a POSIX shell (`/bin/sh` unless `shell` says otherwise)
 * with `kill`, `printf` and `[`: busybox, dash and bash all do.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as DockerEngine from "./DockerEngine.js"
import { BinaryNotFound, SpawnFailed } from "./errors.js"
import { stopGracefully } from "./internal/gracefulStop.js"
import { type Frame, framesOf } from "./internal/multiplexed.js"
import * as Handle from "./internal/handle.js"
import { makeOutputBuffer, Texts } from "./internal/outputBuffer.js"
import { signalName, signalNumber } from "./internal/signals.js"
import {
  DEFAULT_KILL_GRACE,
  DEFAULT_TAIL_LINES,
  type ExecOptions,
  type ProcessHandle,
  ProcessManager,
  type ProcessManagerShape,
  type SignalName
} from "./ProcessManager.js"
import { describe, Exited, type ExitStatus, Signaled } from "./ProcessStatus.js"
import { revealEnv } from "./Redaction.js"

/**
 * Where the processes run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Path of the Docker Engine's unix socket on this machine. */
  readonly socket: string
  /** The container (id or name) the processes run in; it must be running. */
  readonly containerId: string
  /** A POSIX shell inside the container. Defaults to `/bin/sh`. */
  readonly shell?: string | undefined
}

/**
 * The answer to `POST /containers/{id}/exec`.
 *
 * @since 0.1.0
 * @category models
 */
export class ExecCreated extends Schema.Class<ExecCreated>("ExecCreated")({
  Id: Schema.String
}) {}

/**
 * The fields of `GET /exec/{id}/json` this module reads. `ExitCode` is `null`
 * until the process has ended; `Pid` is its pid on the Engine's host.
 *
 * @since 0.1.0
 * @category models
 */
export class ExecInspect extends Schema.Class<ExecInspect>("ExecInspect")({
  ID: Schema.String,
  Running: Schema.Boolean,
  ExitCode: Schema.NullOr(Schema.Int),
  Pid: Schema.Number
}) {}

/**
 * The fields of `GET /containers/{id}/json` this module reads.
 *
 * @since 0.1.0
 * @category models
 */
export class ContainerInspect extends Schema.Class<ContainerInspect>("ContainerInspect")({
  Id: Schema.String,
  State: Schema.Struct({ Running: Schema.Boolean, Status: Schema.String })
}) {}

/** The first line the start script prints, on stdout. */
const PID_LINE = /^sandbox-docker:pid:(\d+)$/
const MISSING_LINE = /^sandbox-docker:missing:(.*)$/

/**
 * Run as `sh -c START_SCRIPT sh argv...`: looks `$1` up like `execvp` (a
 * subshell, so nothing it sets reaches the command's environment), reports,
 * then becomes the command.
 */
const START_SCRIPT = `if (
  set -f
  case $1 in
    */*) [ -f "$1" ] && [ -x "$1" ] ;;
    *)
      rest=$PATH:
      while [ -n "$rest" ]; do
        dir=\${rest%%:*}
        rest=\${rest#*:}
        if [ -n "$dir" ] && [ -f "$dir/$1" ] && [ -x "$dir/$1" ]; then exit 0; fi
      done
      exit 1 ;;
  esac
); then
  printf 'sandbox-docker:pid:%s\\n' "$$"
  exec "$@"
fi
printf 'sandbox-docker:missing:%s\\n' "$PATH"
exit 127`

/**
 * Run as `sh -c SIGNAL_SCRIPT sh NAME PID [group]`: signals the process group
 * of PID, else (unless `group`) PID alone. busybox's `kill` rejects `--`,
 * dash's needs it before a negative pid: probe which one this is first.
 */
const SIGNAL_SCRIPT = `if kill -s 0 -- "$$" 2>/dev/null; then
  kill -s "$1" -- "-$2" 2>/dev/null && exit 0
else
  kill -s "$1" "-$2" 2>/dev/null && exit 0
fi
[ "$3" = group ] && exit 1
kill -s "$1" "$2" 2>/dev/null`

/** The exec's process is gone with its container; no exit code exists. */
const VANISHED = "vanished" as const

const START_BODY = { Detach: false, Tty: false }

/** How long to wait for output still on its way once the process has ended. */
const DRAIN_AFTER_EXIT = Duration.millis(50)
/** How long the Engine may hold the output of an ended process open (it holds 2 s). */
const STREAM_CLOSE_LIMIT = Duration.seconds(5)

/**
 * How long an exit code `128 + n` that this manager did not cause waits for
 * its container to stop, which would make it a death with the container.
 * The Engine marks a killed container stopped ~50-100 ms after the exec's
 * exit on a quiet machine, and took over 300 ms on a loaded one (a CI run
 * read such a death as `Exited{137}`); the wait ends as soon as it is seen
 * stopped, so only a process that really exited with `128 + n` by itself
 * pays the whole window.
 */
const CONTAINER_DEATH_WINDOW = Duration.seconds(1)

/** Exit-code polling: first delay and cap, in milliseconds. */
interface Polling {
  readonly initial: number
  readonly max: number
  /** Whether a still "running" exec also has its container looked at. */
  readonly checkContainer: boolean
}
/**
 * Once the output has ended the exit code is there at once, or nearly; an
 * exec still "running" then may belong to a container that has stopped.
 */
const AFTER_OUTPUT_ENDED: Polling = { initial: 5, max: 250, checkContainer: true }
/**
 * While the output is open. A child that keeps the output open makes the
 * Engine hold the stream up to 2 s after the process ended; its inspect
 * answer says so at once.
 */
const WHILE_OUTPUT_OPEN: Polling = { initial: 50, max: 500, checkContainer: false }

/**
 * Reads the start script's report from the head of stdout, then passes the
 * rest through as text. Anything else in that place is the Engine's own
 * error (`OCI runtime exec failed: …`), kept for the `SpawnFailed` reason.
 */
class StdoutHead {
  private bytes: Array<Uint8Array> = []
  line: string | undefined

  /** Feeds stdout bytes; returns the bytes after the first line once it is complete. */
  push(payload: Uint8Array): Uint8Array | undefined {
    if (this.line !== undefined) return payload
    const newline = payload.indexOf(10)
    if (newline < 0) {
      this.bytes.push(payload)
      return undefined
    }
    this.bytes.push(payload.subarray(0, newline))
    this.line = Buffer.concat(this.bytes).toString("utf8")
    this.bytes = []
    return payload.subarray(newline + 1)
  }

  /** What was read before the first line ended. */
  get partial(): string {
    return Buffer.concat(this.bytes).toString("utf8")
  }
}

/**
 * Builds a ProcessManager for the processes of one container. The Engine
 * connection pool is closed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<ProcessManagerShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const engine = yield* DockerEngine.make(options.socket)
    const shell = options.shell ?? "/bin/sh"
    const container = encodeURIComponent(options.containerId)

    const createExec = (
      cmd: ReadonlyArray<string>,
      config: { readonly env?: ExecOptions["env"]; readonly cwd?: string | undefined }
    ) =>
      engine
        .request("POST", `/containers/${container}/exec`, {
          body: {
            AttachStdin: true,
            AttachStdout: true,
            AttachStderr: true,
            Tty: false,
            Cmd: cmd,
            Env: Object.entries(revealEnv(config.env)).map(([key, value]) => `${key}=${value}`),
            WorkingDir: config.cwd ?? ""
          },
          schema: ExecCreated
        })
        .pipe(Effect.map((created) => created.Id))

    const containerRunning = engine
      .request("GET", `/containers/${container}/json`, { schema: ContainerInspect })
      .pipe(Effect.map((inspect) => inspect.State.Running))

    /**
     * Whether the container is stopped (or gone) now or within `window`. The
     * Engine reports the deaths of a dying container's processes just before
     * the container's own.
     */
    const containerStopsWithin = (window: Duration.Duration): Effect.Effect<boolean> => {
      const stopped = containerRunning.pipe(
        Effect.map((running) => !running),
        Effect.catchAll((error) =>
          Effect.succeed(error._tag === "EngineBadAnswer" && error.status === 404)
        )
      )
      const poll: Effect.Effect<boolean> = Effect.flatMap(stopped, (done) =>
        done ? Effect.succeed(true) : Effect.zipRight(Effect.sleep("20 millis"), poll)
      )
      return poll.pipe(
        Effect.timeout(window),
        Effect.orElseSucceed(() => false)
      )
    }

    /** One look at the exec: its exit code, `VANISHED`, or none while it runs. */
    const lookAtExit = (
      execId: string,
      checkContainer: boolean
    ): Effect.Effect<Option.Option<number | typeof VANISHED>> =>
      Effect.gen(function* () {
        const inspect = yield* engine.request("GET", `/exec/${execId}/json`, {
          schema: ExecInspect
        })
        if (!inspect.Running && inspect.ExitCode !== null) {
          return Option.some<number | typeof VANISHED>(inspect.ExitCode)
        }
        if (!checkContainer) return Option.none()
        // The Engine may keep an exec "running" after its container stopped.
        return (yield* containerRunning) ? Option.none() : Option.some(VANISHED)
      }).pipe(
        Effect.catchAll((error) =>
          Effect.succeed(
            error._tag === "EngineBadAnswer" && error.status === 404
              ? Option.some(VANISHED)
              : Option.none()
          )
        )
      )

    /** Polls the exec until it has ended, the delay doubling up to its cap. */
    const awaitExitCode = (execId: string, polling: Polling = AFTER_OUTPUT_ENDED) => {
      const poll = (delay: number): Effect.Effect<number | typeof VANISHED> =>
        Effect.flatMap(lookAtExit(execId, polling.checkContainer), (found) =>
          Option.isSome(found)
            ? Effect.succeed(found.value)
            : Effect.zipRight(
                Effect.sleep(Duration.millis(delay)),
                poll(Math.min(delay * 2, polling.max))
              )
        )
      return poll(polling.initial)
    }

    /** Runs a shell script in the container to its end; its exit code. */
    const runScript = (script: string, args: ReadonlyArray<string>) =>
      Effect.scoped(
        Effect.gen(function* () {
          const execId = yield* createExec([shell, "-c", script, "sh", ...args], {})
          const connection = yield* engine.upgrade(`/exec/${execId}/start`, START_BODY)
          connection.socket.end()
          yield* Stream.runDrain(framesOf(connection))
          return yield* awaitExitCode(execId)
        })
      )

    const sendSignal = (pid: number, signal: SignalName, mode: "group" | "process") =>
      runScript(SIGNAL_SCRIPT, [signal.replace(/^SIG/, ""), String(pid), mode]).pipe(
        Effect.map((code) => code === 0),
        Effect.orElseSucceed(() => false),
        Effect.withSpan("ContainerProcessManager.signal", { attributes: { pid, signal } })
      )

    /**
     * The life of one exec once created: its output read from the upgraded
     * connection, its exit watched, its stop. Nothing runs until `attach`.
     */
    const track = (
      argv: readonly [string, ...Array<string>],
      execOptions: ExecOptions,
      execId: string
    ) =>
      Effect.gen(function* () {
        const output = yield* makeOutputBuffer(
          execOptions.tailLines ?? DEFAULT_TAIL_LINES,
          execOptions.keepOutput ?? 0
        )
        /** The pid the start script reports, or why it did not start. */
        const started = yield* Deferred.make<number, BinaryNotFound | SpawnFailed>()
        const exited = yield* Deferred.make<ExitStatus>()
        const delivered = new Map<number, SignalName>()
        /** The output reader and the exit watcher, let go once the process is stopped. */
        const fibers: Array<Fiber.RuntimeFiber<unknown>> = []
        const head = new StdoutHead()
        const text = new Texts(output)

        const onHeadLine = (line: string) => {
          const pid = PID_LINE.exec(line)?.[1]
          if (pid !== undefined) return Deferred.succeed(started, Number(pid))
          const searched = MISSING_LINE.exec(line)?.[1]
          if (searched === undefined) return Effect.void // the Engine's error; see `ended`
          return Deferred.fail(
            started,
            new BinaryNotFound({
              binary: argv[0],
              searched: argv[0].includes("/")
                ? [argv[0]]
                : searched.split(":").filter((d) => d !== "")
            })
          )
        }

        const onFrame = (frame: Frame): Effect.Effect<void> => {
          if (frame.source === "stderr") return text.publish("stderr", frame.payload)
          const hadLine = head.line !== undefined
          const rest = head.push(frame.payload)
          if (rest === undefined) return Effect.void
          const published = text.publish("stdout", rest)
          return hadLine ? published : Effect.zipRight(onHeadLine(head.line ?? ""), published)
        }

        /**
         * Exit code `128 + n` is a death by signal n when this manager sent n,
         * or when the container stops with it (its processes die by SIGKILL
         * then); otherwise it is what the process said.
         */
        const toStatus = (code: number | typeof VANISHED): Effect.Effect<ExitStatus> => {
          if (code === VANISHED) return Effect.succeed(new Signaled({ signal: "SIGKILL" }))
          const sent = delivered.get(code - 128)
          if (sent !== undefined) return Effect.succeed(new Signaled({ signal: sent }))
          const signal = code > 128 ? signalName(code - 128) : undefined
          if (signal === undefined) return Effect.succeed(new Exited({ code }))
          return Effect.map(containerStopsWithin(CONTAINER_DEATH_WINDOW), (stopped) =>
            stopped ? new Signaled({ signal }) : new Exited({ code })
          )
        }

        const ended = (status: ExitStatus, reading: Fiber.RuntimeFiber<void>) =>
          Effect.gen(function* () {
            if (!(yield* Deferred.isDone(started))) {
              // The start script's line may still be on its way.
              yield* Effect.ignore(Effect.timeout(Fiber.await(reading), STREAM_CLOSE_LIMIT))
            }
            yield* text.flush
            if (!(yield* Deferred.isDone(started))) {
              // It ended before the start script reported: the Engine could not
              // start it (no shell, no working directory, …) and said why.
              const said = [head.line ?? head.partial, ...(yield* output.tail)].join(" ").trim()
              yield* Deferred.fail(
                started,
                new SpawnFailed({
                  argv,
                  reason:
                    said.length > 0
                      ? said
                      : `ended (${describe(status)}) before it started; is there a shell at ${shell} in container ${options.containerId}?`
                })
              )
            }
            yield* output.end
            yield* Deferred.succeed(exited, status)
          })

        /**
         * Reads the output and watches for the exit, on fibers of their own:
         * the stop waits on them, then lets them go.
         */
        const attach = (connection: DockerEngine.UpgradedConnection) =>
          Effect.gen(function* () {
            // (`attach` runs uninterruptibly; its fibers must not inherit that.)
            const reading = yield* Stream.runForEach(framesOf(connection), onFrame).pipe(
              Effect.interruptible,
              Effect.forkDaemon
            )
            // Usually the output ends with the process; a child can keep it open.
            const watching = yield* Effect.raceFirst(
              Effect.zipRight(Fiber.join(reading), awaitExitCode(execId)),
              Effect.sleep(Duration.millis(WHILE_OUTPUT_OPEN.initial)).pipe(
                Effect.zipRight(awaitExitCode(execId, WHILE_OUTPUT_OPEN))
              )
            ).pipe(
              // Output still on its way belongs in the tail.
              Effect.tap(() =>
                Effect.ignore(Effect.timeout(Fiber.await(reading), DRAIN_AFTER_EXIT))
              ),
              Effect.flatMap(toStatus),
              Effect.flatMap((status) => ended(status, reading)),
              Effect.interruptible,
              Effect.forkDaemon
            )
            fibers.push(reading, watching)
          })

        const deliverTo = (pid: number) => (signal: SignalName) => {
          const number = signalNumber(signal)
          if (number !== undefined) delivered.set(number, signal)
          return sendSignal(pid, signal, "process")
        }

        const stop = Effect.gen(function* () {
          // Interrupted before its pid was known, the process still gets stopped.
          const pid = yield* Deferred.await(started).pipe(
            Effect.interruptible,
            Effect.timeout(STREAM_CLOSE_LIMIT),
            Effect.option
          )
          if (Option.isNone(pid)) return
          yield* stopGracefully(
            {
              pid: pid.value,
              exited,
              deliver: deliverTo(pid.value),
              killRemains: Effect.asVoid(sendSignal(pid.value, "SIGKILL", "group"))
            },
            Duration.decode(execOptions.killGrace ?? DEFAULT_KILL_GRACE)
          )
        }).pipe(Effect.zipRight(Effect.suspend(() => Fiber.interruptAll(fibers))))

        const handle = (pid: number): ProcessHandle =>
          Handle.make({ pid, argv, exited, output, deliver: deliverTo(pid) })

        return { started, attach, stop, handle }
      })

    const exec = Effect.fn("ContainerProcessManager.exec")(function* (
      argv: readonly [string, ...Array<string>],
      execOptions: ExecOptions = {}
    ) {
      const spawnFailed = (error: DockerEngine.EngineError) =>
        new SpawnFailed({ argv, reason: `${error.message} (container ${options.containerId})` })
      const execId = yield* createExec([shell, "-c", START_SCRIPT, "sh", ...argv], {
        env: execOptions.env,
        cwd: execOptions.cwd
      }).pipe(Effect.mapError(spawnFailed))
      const execution = yield* track(argv, execOptions, execId)
      // Starting it, registering its stop and reading its output are one
      // step: no interruption can leave a process in the container unstopped.
      yield* engine.upgrade(`/exec/${execId}/start`, START_BODY).pipe(
        Effect.mapError(spawnFailed),
        Effect.tap((connection) =>
          Effect.gen(function* () {
            yield* Effect.addFinalizer(() => execution.stop)
            connection.socket.end(execOptions.stdin ?? "")
            yield* execution.attach(connection)
          })
        ),
        Effect.uninterruptible
      )
      return execution.handle(yield* Deferred.await(execution.started))
    })

    return { exec }
  })

/**
 * The ProcessManager of one container on the Engine at `socket`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<ProcessManager> =>
  Layer.scoped(ProcessManager, make(options))
