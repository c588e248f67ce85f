/**
 * Docker inside a sandbox that outlives the CLI process that started it.
 *
 * `sandbox-docker sandbox create --docker` starts dockerd inside through the
 * Engine exec API with `Detach: true`, under a fixed launcher script given
 * dockerd's argv as positional parameters (never interpolated). The launcher
 * writes dockerd's pid to {@link STATE_DIR}`/dockerd.pid`, its log to
 * {@link LOG_FILE}, and its exit code to `dockerd.exit` once it ends for
 * good. It supervises dockerd with the policy of `up --restart on-failure`:
 * a dockerd that was ready once (`create` marks it) and exits other than
 * cleanly or by a stop (`stop` marks it) is restarted after a backoff of
 * 500 ms doubling up to 30 s, at most `maxRestarts` times; each crash is a
 * line of `crashes` ({@link readCrashes}), which `sandbox ls` reports. Any
 * later CLI process finds the daemon again through these files: a
 * {@link ProcessHandle} whose status, log tail and signals are short execs in
 * the container, so the readiness runtime (`waitUntilReady`, the `docker info`
 * probe) works on it as on a daemon of its own.
 *
 * @since 0.1.0
 */
import { constants } from "node:os"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as Dockerd from "../Dockerd.js"
import * as DockerdConfig from "../DockerdConfig.js"
import type * as DockerEngine from "../DockerEngine.js"
import { DockerNotInstalled, SpawnFailed, type StartError } from "../errors.js"
import { ExecCreated } from "../ContainerProcessManager.js"
import {
  type ProcessHandle,
  ProcessManager,
  type ProcessManagerShape,
  type SignalName
} from "../ProcessManager.js"
import { Exited, type ExitStatus, Running, Signaled, type ProcessStatus } from "../ProcessStatus.js"
import type { ReadinessPolicy } from "../ReadinessPolicy.js"
import * as Sandbox from "../Sandbox.js"
import type { EventSink } from "../DaemonEvent.js"

/**
 * Where the launcher keeps dockerd's pid and exit code, inside the sandbox.
 *
 * @since 0.1.0
 * @category constants
 */
export const STATE_DIR = "/run/sandbox-docker"

/**
 * dockerd's log inside the sandbox.
 *
 * @since 0.1.0
 * @category constants
 */
export const LOG_FILE = "/var/log/dockerd.log"

/**
 * The label that says a sandbox was created with Docker inside.
 *
 * @since 0.1.0
 * @category constants
 */
export const DOCKER_LABEL = "sandbox-docker.docker"

/** dockerd's own pidfile inside the sandbox. */
const DOCKERD_PIDFILE = "/var/run/docker.pid"

/**
 * Run as `sh -c LAUNCH_SCRIPT sh LOG STATE MAX_RESTARTS argv...`: starts argv
 * in the background with its output in LOG and writes its pid; when it
 * exits, restarts it (on failure, once `ready` is marked, unless `stop` is
 * marked, at most MAX_RESTARTS times, 500 ms doubling up to 30 s between),
 * recording each crash as `EPOCH-SECONDS CODE RESTART` in `crashes`; else
 * writes its exit code. No value reaches the shell as code.
 */
const LAUNCH_SCRIPT = `log=$1
state=$2
max=$3
shift 3
mkdir -p "$state" || exit 1
rm -f "$state/dockerd.exit" "$state/dockerd.pid" "$state/stop" "$state/ready" "$state/restarting"
: >"$state/crashes"
: >"$log"
restarts=0
delay=500
while :; do
  "$@" >>"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$state/dockerd.pid.tmp" && mv "$state/dockerd.pid.tmp" "$state/dockerd.pid"
  rm -f "$state/restarting"
  wait "$pid"
  code=$?
  if [ "$code" = 0 ] || [ -e "$state/stop" ] || [ ! -e "$state/ready" ] || [ "$restarts" -ge "$max" ]; then
    echo "$code" >"$state/dockerd.exit"
    exit 0
  fi
  restarts=$((restarts + 1))
  : >"$state/restarting"
  echo "$(date +%s) $code $restarts" >>"$state/crashes"
  echo "sandbox-docker: dockerd exited ($code): restart $restarts of $max in \${delay}ms" >>"$log"
  sleep "$((delay / 1000)).$(printf '%03d' "$((delay % 1000))")"
  delay=$((delay * 2))
  [ "$delay" -gt 30000 ] && delay=30000
  if [ -e "$state/stop" ]; then
    echo "$code" >"$state/dockerd.exit"
    exit 0
  fi
done`

/** Run as `sh -c MARK_SCRIPT sh STATE NAME`: creates the marker file STATE/NAME. */
const MARK_SCRIPT = `mkdir -p "$1" && : >"$1/$2"`

/** Run as `sh -c CRASHES_SCRIPT sh STATE`. */
const CRASHES_SCRIPT = `cat "$1/crashes" 2>/dev/null || true`

/**
 * Run as `sh -c STATUS_SCRIPT sh STATE`: one line, `exited CODE`,
 * `running PID`, `restarting PID`, `gone PID` or `none`.
 */
const STATUS_SCRIPT = `if [ -f "$1/dockerd.exit" ]; then
  printf 'exited %s %s\\n' "$(cat "$1/dockerd.exit")" "$(cat "$1/dockerd.pid" 2>/dev/null)"
elif [ -f "$1/dockerd.pid" ]; then
  pid=$(cat "$1/dockerd.pid")
  if [ -f "$1/restarting" ]; then printf 'restarting %s\\n' "$pid"
  elif [ -d "/proc/$pid" ]; then printf 'running %s\\n' "$pid"
  else printf 'gone %s\\n' "$pid"; fi
else
  echo none
fi`

/** Run as `sh -c SIGNAL_SCRIPT sh NAME PID`. */
const SIGNAL_SCRIPT = `kill -s "$1" "$2" 2>/dev/null`

/** Run as `sh -c TAIL_SCRIPT sh LINES LOG`. */
const TAIL_SCRIPT = `tail -n "$1" "$2" 2>/dev/null || true`

/**
 * What the launcher's files say about dockerd.
 *
 * @since 0.1.0
 * @category models
 */
export type LauncherState =
  | { readonly _tag: "None" }
  | { readonly _tag: "Running"; readonly pid: number }
  | { readonly _tag: "Restarting"; readonly pid: number }
  | { readonly _tag: "Gone"; readonly pid: number }
  | { readonly _tag: "Exited"; readonly pid: number; readonly status: ExitStatus }

const SIGNALS = constants.signals as Readonly<Partial<Record<string, number>>>

/** A shell's `$?`: above 128 is a death by signal 128+n. */
const statusOfCode = (code: number): ExitStatus => {
  if (code > 128 && code < 128 + 65) {
    const name = Object.keys(SIGNALS).find((signal) => SIGNALS[signal] === code - 128)
    if (name !== undefined) return new Signaled({ signal: name })
  }
  return new Exited({ code })
}

/**
 * Runs a short fixed command in the sandbox: its exit code and output lines.
 *
 * @since 0.1.0
 * @category running
 */
export const runShort = (
  manager: ProcessManagerShape,
  argv: readonly [string, ...Array<string>],
  timeout: Duration.DurationInput = "10 seconds"
): Effect.Effect<{ readonly code: number; readonly lines: ReadonlyArray<string> }> =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* manager.exec(argv, { killGrace: "1 second", tailLines: 200 })
      const status = yield* handle.awaitExit
      return {
        code: status._tag === "Exited" ? status.code : 128,
        lines: yield* handle.logTail
      }
    })
  ).pipe(
    Effect.timeout(timeout),
    Effect.orElseSucceed(() => ({ code: -1, lines: [] as ReadonlyArray<string> }))
  )

/**
 * Reads the launcher's files.
 *
 * @since 0.1.0
 * @category running
 */
export const readState = (manager: ProcessManagerShape): Effect.Effect<LauncherState> =>
  Effect.map(runShort(manager, ["sh", "-c", STATUS_SCRIPT, "sh", STATE_DIR]), ({ lines }) => {
    const [word, first, second] = (lines.at(-1) ?? "").trim().split(/\s+/)
    const number = (text: string | undefined) =>
      text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined
    const a = number(first)
    if (word === "running" && a !== undefined) return { _tag: "Running", pid: a }
    if (word === "restarting" && a !== undefined) return { _tag: "Restarting", pid: a }
    if (word === "gone" && a !== undefined) return { _tag: "Gone", pid: a }
    if (word === "exited" && a !== undefined) {
      return { _tag: "Exited", pid: number(second) ?? 0, status: statusOfCode(a) }
    }
    return { _tag: "None" }
  })

/**
 * The last lines of dockerd's log inside the sandbox.
 *
 * @since 0.1.0
 * @category running
 */
export const logTail = (manager: ProcessManagerShape, lines = 50) =>
  Effect.map(
    runShort(manager, ["sh", "-c", TAIL_SCRIPT, "sh", String(lines), LOG_FILE]),
    (result) => result.lines
  )

/**
 * A handle on the detached dockerd of pid `pid`: status, exit, log tail and
 * signals through short execs in the sandbox. No live output (the log is in
 * {@link LOG_FILE}).
 *
 * @since 0.1.0
 * @category constructors
 */
export const handle = (
  manager: ProcessManagerShape,
  pid: number,
  argv: ReadonlyArray<string>
): ProcessHandle => {
  let gone = 0
  const status: Effect.Effect<ProcessStatus> = Effect.map(readState(manager), (state) => {
    if (state._tag === "Exited") return state.status
    if (state._tag === "Gone") {
      // The launcher writes the exit code just after the exit; a launcher
      // that never does was killed with its daemon.
      gone += 1
      return gone >= 10 ? new Signaled({ signal: "SIGKILL" }) : new Running()
    }
    gone = 0
    // Restarting counts as running: the launcher is about to start it again.
    return new Running()
  })
  const awaitExit: Effect.Effect<ExitStatus> = Effect.flatMap(status, (now) =>
    now._tag === "Running"
      ? Effect.zipRight(Effect.sleep("500 millis"), awaitExit)
      : Effect.succeed(now)
  )
  return {
    pid,
    argv,
    status,
    awaitExit,
    output: Stream.empty,
    logTail: logTail(manager),
    signal: (signal: SignalName) =>
      Effect.map(
        runShort(manager, [
          "sh",
          "-c",
          SIGNAL_SCRIPT,
          "sh",
          signal.replace(/^SIG/, ""),
          String(pid)
        ]),
        (result) => result.code === 0
      )
  }
}

/**
 * The configuration of dockerd inside a sandbox of this spec.
 *
 * @since 0.1.0
 * @category config
 */
export const configFor = (spec: Sandbox.SandboxSpec, stopGrace: Duration.Duration) =>
  DockerdConfig.decode({ ...Sandbox.innerDockerd(spec, stopGrace), pidfile: DOCKERD_PIDFILE })

/**
 * The configuration a later command uses for the Docker inside a sandbox
 * (socket and docker CLI are the same for every runtime).
 *
 * @since 0.1.0
 * @category config
 */
export const attachConfig = DockerdConfig.decode({ pidfile: DOCKERD_PIDFILE })

/**
 * Prepares the sandbox for Docker and starts dockerd inside, detached: it
 * outlives this process. Fails with `DockerNotInstalled` when the image has
 * no dockerd. Returns the handle, once the launcher has written the pid.
 *
 * @since 0.1.0
 * @category starting
 */
export const launch = Effect.fn("DetachedDockerd.launch")(function* (
  engine: DockerEngine.DockerEngineClient,
  manager: ProcessManagerShape,
  container: string,
  spec: Sandbox.SandboxSpec,
  config: DockerdConfig.DockerdConfig,
  maxRestarts = 3
) {
  yield* Sandbox.prepare(manager, spec)
  // A missing binary is found before anything runs.
  yield* Effect.scoped(
    Effect.flatMap(
      manager.exec([config.binary, "--version"], { killGrace: "1 second" }),
      (h) => h.awaitExit
    )
  ).pipe(
    Effect.catchTag("BinaryNotFound", (error) =>
      Effect.fail(
        new DockerNotInstalled({
          binary: error.binary,
          searched: error.searched,
          hint: Dockerd.REMOTE_INSTALL_HINT
        })
      )
    )
  )
  const argv = DockerdConfig.argv(config)
  const id = encodeURIComponent(container)
  yield* engine
    .request("POST", `/containers/${id}/exec`, {
      body: {
        AttachStdin: false,
        AttachStdout: false,
        AttachStderr: false,
        Tty: false,
        Cmd: [
          "/bin/sh",
          "-c",
          LAUNCH_SCRIPT,
          "sh",
          LOG_FILE,
          STATE_DIR,
          String(maxRestarts),
          ...argv
        ]
      },
      schema: ExecCreated
    })
    .pipe(
      Effect.flatMap((created) =>
        engine.request("POST", `/exec/${created.Id}/start`, { body: { Detach: true, Tty: false } })
      )
    )
  // The launcher writes the pid at once.
  const state = yield* readState(manager).pipe(
    Effect.flatMap((found) =>
      found._tag === "None" ? Effect.fail("no pid yet") : Effect.succeed(found.pid)
    ),
    Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.compose(Schedule.recurs(50)))),
    Effect.option
  )
  if (Option.isNone(state)) {
    return yield* new SpawnFailed({
      argv,
      reason: `the launcher wrote no pid to ${STATE_DIR}/dockerd.pid: ${(yield* logTail(manager, 5)).join(" | ")}`
    })
  }
  return handle(manager, state.value, argv)
})

/**
 * Waits until the detached dockerd answers `docker info`, as a
 * `DockerDaemon`; or fails with `DaemonCrashed` (log tail and diagnosis) or
 * `DaemonNotReady`.
 *
 * @since 0.1.0
 * @category waiting
 */
export const awaitReady = (
  manager: ProcessManagerShape,
  process: ProcessHandle,
  config: DockerdConfig.DockerdConfig,
  policy: ReadinessPolicy,
  onEvent: EventSink = () => Effect.void
): Effect.Effect<Dockerd.DockerDaemon, StartError> =>
  Dockerd.awaitRemoteReady(process, config, policy, onEvent).pipe(
    Effect.provideService(ProcessManager, manager)
  )

/**
 * Stops the detached dockerd: SIGTERM, up to `grace`, SIGKILL.
 *
 * @since 0.1.0
 * @category stopping
 */
export const stop = (manager: ProcessManagerShape, grace: Duration.Duration) =>
  Effect.gen(function* () {
    // Marked first: the launcher restarts no dockerd that is being stopped.
    yield* mark(manager, "stop")
    const state = yield* readState(manager)
    if (state._tag !== "Running") return Option.none<ExitStatus>()
    const daemon = handle(manager, state.pid, [])
    yield* daemon.signal("SIGTERM")
    const exited = yield* daemon.awaitExit.pipe(Effect.timeout(grace), Effect.option)
    if (Option.isSome(exited)) return exited
    yield* daemon.signal("SIGKILL")
    return yield* daemon.awaitExit.pipe(Effect.timeout("10 seconds"), Effect.option)
  })

/** Creates a marker file in the launcher's state directory. */
const mark = (manager: ProcessManagerShape, name: "ready" | "stop") =>
  runShort(manager, ["sh", "-c", MARK_SCRIPT, "sh", STATE_DIR, name])

/**
 * Marks the detached dockerd ready: from now on, the launcher restarts it
 * when it crashes (as `up --restart on-failure` restarts only a daemon that
 * was ready once).
 *
 * @since 0.2.0
 * @category supervision
 */
export const markReady = (manager: ProcessManagerShape): Effect.Effect<void> =>
  Effect.asVoid(mark(manager, "ready"))

/**
 * A crash of the detached dockerd, as the launcher recorded it.
 *
 * @since 0.2.0
 * @category models
 */
export interface Crash {
  /** When it exited, in epoch seconds (the sandbox's clock). */
  readonly at: number
  readonly status: ExitStatus
  /** The restart that followed (1 for the first). */
  readonly restart: number
}

/**
 * The crashes the launcher recorded, oldest first.
 *
 * @since 0.2.0
 * @category supervision
 */
export const readCrashes = (manager: ProcessManagerShape): Effect.Effect<ReadonlyArray<Crash>> =>
  Effect.map(runShort(manager, ["sh", "-c", CRASHES_SCRIPT, "sh", STATE_DIR]), ({ lines }) =>
    lines.flatMap((line) => {
      const match = /^(\d+) (\d+) (\d+)$/.exec(line.trim())
      return match === null
        ? []
        : [
            {
              at: Number(match[1]),
              status: statusOfCode(Number(match[2])),
              restart: Number(match[3])
            }
          ]
    })
  )
