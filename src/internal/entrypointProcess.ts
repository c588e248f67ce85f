/**
 * A process the sandbox container's entrypoint starts as the container
 * starts (dockerd: no Engine exec round trip before it runs), adopted on
 * this machine as a `ProcessHandle` through the directory the container
 * shares with it.
 *
 * The entrypoint ({@link ENTRY_SCRIPT}) runs the preparation, then the
 * argv it was given, and writes into the directory: `dockerd.pid` once the
 * process runs, `dockerd.log` its output, `dockerd.exit` its `wait` status
 * when it ends, or `dockerd.missing` (the `PATH` searched) when there is
 * no such binary. Each marker appears by a rename, so it is never read half
 * written; each is watched, not polled, with a slow look as a safety net.
 *
 * @internal
 */
import * as Path from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { DockerEngineClient } from "../DockerEngine.js"
import { BinaryNotFound, SpawnFailed } from "../errors.js"
import {
  DEFAULT_KILL_GRACE,
  DEFAULT_TAIL_LINES,
  type ExecOptions,
  type ProcessHandle,
  type ProcessManagerShape,
  type SignalName
} from "../ProcessManager.js"
import { Exited, type ExitStatus, Signaled } from "../ProcessStatus.js"
import { stopGracefully } from "./gracefulStop.js"
import * as Handle from "./handle.js"
import { makeOutputBuffer, type OutputBuffer, Texts } from "./outputBuffer.js"
import { signalName } from "./signals.js"

/** The markers the entrypoint writes into the shared directory (names as in ENTRY_SCRIPT). */
const PID = "dockerd.pid"
const LOG = "dockerd.log"
const EXIT = "dockerd.exit"
const MISSING = "dockerd.missing"
const COMPLAINTS = "prepare.log"

/**
 * The entrypoint, as one fixed script: `$1` is the shared directory, `$2`
 * the preparation (a constant), the rest the argv to start (none: only the
 * preparation). Constant text: no value of the caller's reaches it.
 */
const ENTRY_SCRIPT = `dir=$1
exec 2>"$dir/prepare.log"
sh -c "$2"
shift 2
if [ "$#" -gt 0 ]; then
  if command -v "$1" >/dev/null 2>&1; then
    : >"$dir/dockerd.log"
    "$@" >>"$dir/dockerd.log" 2>&1 </dev/null &
    echo "$!" >"$dir/.dockerd.pid" && mv "$dir/.dockerd.pid" "$dir/dockerd.pid"
    wait "$!"
    echo "$?" >"$dir/.dockerd.exit" && mv "$dir/.dockerd.exit" "$dir/dockerd.exit"
  else
    echo "$PATH" >"$dir/.dockerd.missing" && mv "$dir/.dockerd.missing" "$dir/dockerd.missing"
  fi
fi
exec sleep infinity
`

/**
 * The container's entrypoint: the preparation (a constant script) as it
 * starts, with its complaints in the directory, then `argv` (none: the
 * preparation only), then nothing but sleep.
 */
export const entrypoint = (
  dir: string,
  preparation: string,
  argv: ReadonlyArray<string>
): Array<string> => ["sh", "-c", ENTRY_SCRIPT, "sh", dir, preparation, ...argv]

/**
 * Run as `sh -c SIGNAL_SCRIPT sh NAME PID`, NAME without `SIG` (dash's
 * `kill` knows no other): the process alone, its group is the entrypoint's.
 */
const SIGNAL_SCRIPT = `kill -s "$1" "$2" 2>/dev/null`

/** A marker's content: one decimal integer. */
const Integer = Schema.compose(Schema.Trim, Schema.NumberFromString).pipe(
  Schema.compose(Schema.Int)
)

/** How long the entrypoint may take to start the process. */
const START_LIMIT = Duration.seconds(20)

/** What the adoption needs. */
export interface AdoptOptions {
  /** The shared directory, as this machine sees it. */
  readonly dir: string
  /** The argv the entrypoint was given. */
  readonly argv: readonly [string, ...Array<string>]
  /** The container, watched: a process dies with it. */
  readonly containerId: string
  /** The host engine the container runs on. */
  readonly engine: DockerEngineClient
  /** The container's process manager, for signals (an exec of `kill`). */
  readonly manager: ProcessManagerShape
}

/**
 * Waits until one of `names` is in `dir`: looks at once, at each change
 * the directory's watch reports, and `every` for the first few times (a
 * change just before the watch started); a watch that cannot start (no
 * inotify instance left) turns into a look `every`.
 */
const appeared = (
  fs: FileSystem.FileSystem,
  dir: string,
  names: ReadonlyArray<string>,
  every: Duration.DurationInput
): Effect.Effect<string> => {
  const look = Effect.findFirst(names, (name) =>
    fs.exists(Path.join(dir, name)).pipe(Effect.orElseSucceed(() => false))
  )
  const looks = (schedule: Schedule.Schedule<unknown>) =>
    Stream.fromSchedule(schedule).pipe(Stream.as(undefined))
  const wakeups = fs.watch(dir).pipe(
    Stream.filter((event) => names.includes(Path.basename(event.path))),
    Stream.as(undefined),
    Stream.catchAllCause(() => looks(Schedule.spaced(every)))
  )
  return Stream.mergeAll(
    [
      Stream.succeed(undefined),
      wakeups,
      looks(Schedule.intersect(Schedule.spaced(every), Schedule.recurs(8)))
    ],
    { concurrency: "unbounded" }
  ).pipe(
    Stream.mapEffect(() => look),
    Stream.filterMap((found) => found),
    Stream.runHead,
    Effect.flatMap((found) => found),
    Effect.orDie
  )
}

/** A `wait` status as an exit: `128 + n` is the death by signal `n`. */
const exitStatus = (code: number): ExitStatus => {
  const signal = code > 128 ? signalName(code - 128) : undefined
  return signal === undefined ? new Exited({ code }) : new Signaled({ signal })
}

/**
 * Reads the log file into `output` from where it was last read: one reader
 * at a time (the follower's wake-ups, a tail asked for, the end).
 */
const logReader = (fs: FileSystem.FileSystem, path: string, output: OutputBuffer) =>
  Effect.gen(function* () {
    const file = yield* fs.open(path, { flag: "r" })
    const texts = new Texts(output)
    const lock = yield* Effect.makeSemaphore(1)
    const drain: Effect.Effect<void> = file.readAlloc(64 * 1024).pipe(
      Effect.flatMap(
        Option.match({
          onNone: () => Effect.void,
          onSome: (bytes) => Effect.zipRight(texts.publish("stderr", bytes), drain)
        })
      ),
      Effect.ignore
    )
    return { read: lock.withPermits(1)(drain), flush: texts.flush }
  })

/**
 * Adopts the process the entrypoint started: its pid once it runs, its
 * output from the log file, its end from the exit marker or from the
 * container's stop (then SIGKILL: the kernel ends what a stopped container
 * held). Signals go through an exec of `kill`. When the scope closes the
 * process is stopped as a ProcessManager stops one: SIGTERM, the grace,
 * SIGKILL.
 */
export const adopt = Effect.fn("EntrypointProcess.adopt")(function* (
  options: AdoptOptions,
  execOptions: ExecOptions = {}
) {
  const fs = yield* FileSystem.FileSystem
  const { argv, dir } = options
  const marker = (name: string) => Path.join(dir, name)
  const spawnFailed = (reason: string) => new SpawnFailed({ argv, reason })
  const readInteger = (name: string) =>
    fs.readFileString(marker(name)).pipe(
      Effect.flatMap(Schema.decode(Integer)),
      Effect.mapError((error) => spawnFailed(`cannot read ${name}: ${error.message}`))
    )

  const first = yield* appeared(fs, dir, [PID, MISSING], "50 millis").pipe(
    Effect.timeoutFail({
      duration: START_LIMIT,
      onTimeout: () =>
        spawnFailed(
          `the sandbox's entrypoint did not start it within ${Duration.format(START_LIMIT)}`
        )
    })
  )
  const complaints = yield* fs
    .readFileString(marker(COMPLAINTS))
    .pipe(Effect.orElseSucceed(() => ""))
  if (complaints.trim().length > 0) {
    yield* Effect.logDebug("preparation steps failed").pipe(
      Effect.annotateLogs({ output: complaints.trim().split("\n").join(" | ") })
    )
  }
  if (first === MISSING) {
    const searched = yield* fs.readFileString(marker(MISSING)).pipe(Effect.orElseSucceed(() => ""))
    return yield* new BinaryNotFound({
      binary: argv[0],
      searched: searched
        .trim()
        .split(":")
        .filter((entry) => entry.length > 0)
    })
  }
  const pid = yield* readInteger(PID)

  const output = yield* makeOutputBuffer(execOptions.tailLines ?? DEFAULT_TAIL_LINES)
  const log = yield* logReader(fs, marker(LOG), output).pipe(
    Effect.mapError((error) => spawnFailed(`cannot read its log: ${error.message}`))
  )
  const exited = yield* Deferred.make<ExitStatus>()

  // Its end: the exit marker, or the container's stop (a 404: it is gone).
  // An unreadable marker (the sandbox's own code may write there): ended,
  // with no status to tell.
  const statusInMarker = readInteger(EXIT).pipe(
    Effect.map(exitStatus),
    Effect.orElseSucceed((): ExitStatus => new Exited({ code: 255 }))
  )
  const exitMarker = Effect.zipRight(appeared(fs, dir, [EXIT], "250 millis"), statusInMarker)
  const containerStopped = options.engine
    .request("POST", `/containers/${options.containerId}/wait?condition=not-running`)
    .pipe(
      Effect.catchAll((error) =>
        error._tag === "EngineBadAnswer" && error.status === 404 ? Effect.void : Effect.fail(error)
      ),
      Effect.retry(Schedule.spaced("1 second")),
      Effect.zipRight(
        Effect.if(fs.exists(marker(EXIT)).pipe(Effect.orElseSucceed(() => false)), {
          onTrue: () => statusInMarker,
          onFalse: () => Effect.succeed<ExitStatus>(new Signaled({ signal: "SIGKILL" }))
        })
      )
    )
  const logFollower = fs.watch(marker(LOG)).pipe(
    Stream.catchAllCause(() => Stream.empty),
    Stream.runForEach(() => log.read)
  )
  yield* Effect.raceFirst(exitMarker, containerStopped).pipe(
    Effect.raceFirst(Effect.zipRight(logFollower, Effect.never)),
    // Its last words are in the tail before its end is told.
    Effect.tap(() => Effect.zipRight(Effect.zipRight(log.read, log.flush), output.end)),
    Effect.flatMap((status) => Deferred.succeed(exited, status)),
    Effect.interruptible,
    Effect.forkScoped
  )

  const deliver = (signal: SignalName): Effect.Effect<boolean> =>
    Effect.scoped(
      Effect.flatMap(
        options.manager.exec(
          ["sh", "-c", SIGNAL_SCRIPT, "sh", signal.replace(/^SIG/, ""), String(pid)],
          {
            killGrace: "1 second",
            tailLines: 5
          }
        ),
        (handle) => handle.awaitExit
      )
    ).pipe(
      Effect.map((status) => status._tag === "Exited" && status.code === 0),
      Effect.orElseSucceed(() => false)
    )
  yield* Effect.addFinalizer(() =>
    stopGracefully(
      { pid, exited, deliver, killRemains: Effect.void },
      Duration.decode(execOptions.killGrace ?? DEFAULT_KILL_GRACE)
    )
  )
  // The tail asked for is the log as it is now, whether or not a change was seen.
  return {
    ...Handle.make({ pid, argv, exited, output, deliver }),
    logTail: Effect.zipRight(log.read, output.tail)
  }
})

/**
 * `manager`, except that its first start of `argv` adopts the process the
 * entrypoint started with that argv (`adoption`); every later start (a
 * restart) is the manager's own.
 */
export const adoptingFirst = (
  manager: ProcessManagerShape,
  argv: ReadonlyArray<string>,
  adoption: (
    execOptions: ExecOptions | undefined
  ) => Effect.Effect<ProcessHandle, BinaryNotFound | SpawnFailed, Scope.Scope>
): Effect.Effect<ProcessManagerShape> =>
  Effect.map(Ref.make(false), (adopted) => ({
    exec: (command, execOptions) =>
      command.length === argv.length && command.every((arg, i) => arg === argv[i])
        ? Effect.flatMap(Ref.getAndSet(adopted, true), (already) =>
            already ? manager.exec(command, execOptions) : adoption(execOptions)
          )
        : manager.exec(command, execOptions)
  }))
