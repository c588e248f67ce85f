/**
 * Every typed error of sandbox-docker. Each one is tagged data that carries
 * what a person needs to act: the file, the pid, the exit code or signal, the
 * last log lines, a diagnosis when the log shows a known cause.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { ExitStatus, describe } from "./ProcessStatus.js"

const LogTail = Schema.Array(Schema.String)

const formatTail = (tail: ReadonlyArray<string>): string =>
  tail.length === 0 ? "" : `\nlast log lines:\n  ${tail.slice(-10).join("\n  ")}`

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/**
 * The executable could not be found; raised before anything is spawned.
 *
 * @since 0.1.0
 * @category errors
 */
export class BinaryNotFound extends Schema.TaggedError<BinaryNotFound>()("BinaryNotFound", {
  binary: Schema.String,
  searched: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.binary.includes("/")
      ? `executable "${this.binary}" does not exist or is not executable`
      : `executable "${this.binary}" was not found on PATH (${this.searched.join(":")}); install it or pass its full path`
  }
}

/**
 * The operating system refused to start the process for another reason than a
 * missing binary (permissions, a missing working directory, …).
 *
 * @since 0.1.0
 * @category errors
 */
export class SpawnFailed extends Schema.TaggedError<SpawnFailed>()("SpawnFailed", {
  argv: Schema.Array(Schema.String),
  reason: Schema.String
}) {
  override get message(): string {
    return `could not start ${this.argv[0] ?? "process"}: ${this.reason}`
  }
}

// ---------------------------------------------------------------------------
// Probes
//
// A probe's failure is an expected outcome, made on every attempt of every
// wait: plain data with a message, not an `Error`. An `Error` captures a
// stack trace, which V8 keeps as frames that hold the fiber that made it,
// and through the fiber's context the previous attempt's failure: a chain
// that grew with every attempt.
// ---------------------------------------------------------------------------

/**
 * A probe found the target not there yet: no socket, connection refused.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProbeNotYet extends Schema.TaggedClass<ProbeNotYet>()("ProbeNotYet", {
  probe: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.probe}: not yet (${this.reason})`
  }
}

/**
 * A probe did not answer within its own timeout.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProbeTimedOut extends Schema.TaggedClass<ProbeTimedOut>()("ProbeTimedOut", {
  probe: Schema.String,
  timeoutMs: Schema.Number
}) {
  get message(): string {
    return `${this.probe}: no answer within ${this.timeoutMs}ms`
  }
}

/**
 * A probe got an answer, and the answer was a failure.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProbeFailed extends Schema.TaggedClass<ProbeFailed>()("ProbeFailed", {
  probe: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.probe}: failed (${this.reason})`
  }
}

/**
 * Why one probe attempt failed.
 *
 * @since 0.1.0
 * @category errors
 */
export const ProbeFailure = Schema.Union(ProbeNotYet, ProbeTimedOut, ProbeFailed)

/**
 * @since 0.1.0
 * @category errors
 */
export type ProbeFailure = ProbeNotYet | ProbeTimedOut | ProbeFailed

// ---------------------------------------------------------------------------
// Readiness
// ---------------------------------------------------------------------------

/**
 * The process exited (with a code or from a signal) before it became ready.
 *
 * @since 0.1.0
 * @category errors
 */
export class ExitedBeforeReady extends Schema.TaggedError<ExitedBeforeReady>()(
  "ExitedBeforeReady",
  {
    pid: Schema.Number,
    status: ExitStatus,
    elapsedMs: Schema.Number,
    attempts: Schema.Number,
    logTail: LogTail
  }
) {
  override get message(): string {
    return `process ${this.pid} exited before it was ready (${describe(this.status)}) after ${this.elapsedMs}ms${formatTail(this.logTail)}`
  }
}

/**
 * The process stayed alive but was not ready by the deadline.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotReadyByDeadline extends Schema.TaggedError<NotReadyByDeadline>()(
  "NotReadyByDeadline",
  {
    pid: Schema.Number,
    deadlineMs: Schema.Number,
    elapsedMs: Schema.Number,
    attempts: Schema.Number,
    lastFailures: Schema.Array(ProbeFailure),
    logTail: LogTail
  }
) {
  override get message(): string {
    const failures = this.lastFailures.map((f) => f.message).join("; ")
    return `process ${this.pid} was not ready within ${this.deadlineMs}ms (${this.attempts} attempts; last: ${failures || "none"})${formatTail(this.logTail)}`
  }
}

/**
 * Every way `waitUntilReady` can fail.
 *
 * @since 0.1.0
 * @category errors
 */
export type ReadinessError = ExitedBeforeReady | NotReadyByDeadline

// ---------------------------------------------------------------------------
// Docker daemon: configuration and preflight
// ---------------------------------------------------------------------------

/**
 * A configuration value is not allowed. Names the field and what is allowed.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  field: Schema.String,
  problem: Schema.String
}) {
  override get message(): string {
    return `invalid configuration: ${this.field}: ${this.problem}`
  }
}

/**
 * The Docker daemon binary is not installed: `binary` as configured,
 * `searched` the places looked at (the PATH's directories for a name, the
 * path itself for a path), `hint` what to do about it, in the caller's terms.
 *
 * @since 0.1.0
 * @category errors
 */
export class DockerNotInstalled extends Schema.TaggedError<DockerNotInstalled>()(
  "DockerNotInstalled",
  {
    binary: Schema.String,
    searched: Schema.Array(Schema.String),
    hint: Schema.String
  }
) {
  override get message(): string {
    const missing = this.binary.includes("/")
      ? `"${this.binary}" does not exist or is not executable`
      : `"${this.binary}" was not found on PATH${this.searched.length > 0 ? ` (searched ${this.searched.join(":")})` : ""}`
    return `Docker is not installed: ${missing}.${this.hint === "" ? "" : ` ${this.hint}`}`
  }
}

/**
 * The pidfile names a live process: another daemon is (probably) running.
 * The file is left alone.
 *
 * @since 0.1.0
 * @category errors
 */
export class PidfileInUse extends Schema.TaggedError<PidfileInUse>()("PidfileInUse", {
  pidfile: Schema.String,
  pid: Schema.Number
}) {
  override get message(): string {
    return `pidfile ${this.pidfile} holds the pid ${this.pid} of a running process: stop that daemon first, or choose another --pidfile`
  }
}

/**
 * A dockerd of these paths is running already (found by the pidfile, or by
 * its command line naming the socket, data-root or exec-root): left, most
 * likely, by a run whose supervisor was killed before it could stop it.
 * Nothing is touched; `replace` (`--replace`) stops it and starts anew.
 *
 * @since 0.1.0
 * @category errors
 */
export class DaemonAlreadyRunning extends Schema.TaggedError<DaemonAlreadyRunning>()(
  "DaemonAlreadyRunning",
  {
    pid: Schema.Number,
    pidfile: Schema.String,
    socket: Schema.String,
    /** What showed it is ours: `pidfile`, `socket`, `data-root` or `exec-root`. */
    foundBy: Schema.String
  }
) {
  override get message(): string {
    return `a dockerd (pid ${this.pid}, found by its ${this.foundBy}) already runs for the socket ${this.socket}, left by a run that could not stop it: stop it with \`sandbox-docker down --pidfile ${this.pidfile}\`, or pass --replace (the library's \`replace: true\`) to stop it and start anew`
  }
}

/**
 * A directory stands where the socket should be created.
 *
 * @since 0.1.0
 * @category errors
 */
export class SocketPathIsDirectory extends Schema.TaggedError<SocketPathIsDirectory>()(
  "SocketPathIsDirectory",
  { socket: Schema.String }
) {
  override get message(): string {
    return `the socket path ${this.socket} is a directory: remove it or choose another --socket`
  }
}

/**
 * Something already answers on the socket: another daemon owns it.
 *
 * @since 0.1.0
 * @category errors
 */
export class SocketInUse extends Schema.TaggedError<SocketInUse>()("SocketInUse", {
  socket: Schema.String
}) {
  override get message(): string {
    return `something already accepts connections on ${this.socket}: stop it or choose another --socket`
  }
}

/**
 * A directory the daemon must write to is not writable.
 *
 * @since 0.1.0
 * @category errors
 */
export class DirectoryNotWritable extends Schema.TaggedError<DirectoryNotWritable>()(
  "DirectoryNotWritable",
  {
    field: Schema.String,
    path: Schema.String,
    reason: Schema.String
  }
) {
  override get message(): string {
    return `${this.field} ${this.path} is not writable (${this.reason}): fix its permissions or choose another directory`
  }
}

/**
 * The socket could not be given the mode the configuration asks for, after
 * the daemon was ready (the daemon is then stopped: a socket wider open than
 * asked is never left).
 *
 * @since 0.1.0
 * @category errors
 */
export class SocketModeNotApplied extends Schema.TaggedError<SocketModeNotApplied>()(
  "SocketModeNotApplied",
  {
    socket: Schema.String,
    /** The mode asked for, in octal (`0660`). */
    mode: Schema.String,
    reason: Schema.String
  }
) {
  override get message(): string {
    return `could not give the socket ${this.socket} the mode ${this.mode} (${this.reason}): run as its owner or root, or choose another --socket-mode`
  }
}

// ---------------------------------------------------------------------------
// Docker daemon: start and supervision
// ---------------------------------------------------------------------------

/**
 * A known cause recognised in the daemon's log, with what to do about it.
 *
 * @since 0.1.0
 * @category models
 */
export class Diagnosis extends Schema.Class<Diagnosis>("Diagnosis")({
  /** A stable identifier, e.g. `unknown-flag`. */
  cause: Schema.String,
  /** What went wrong, in a sentence. */
  summary: Schema.String,
  /** What to do. */
  hint: Schema.String,
  /** The log line that showed it. */
  line: Schema.String
}) {}

const formatDiagnosis = (diagnosis: Diagnosis | undefined): string =>
  diagnosis === undefined ? "" : `\ndiagnosis: ${diagnosis.summary}. ${diagnosis.hint}`

/**
 * The daemon exited before it was ready.
 *
 * @since 0.1.0
 * @category errors
 */
export class DaemonCrashed extends Schema.TaggedError<DaemonCrashed>()("DaemonCrashed", {
  pid: Schema.Number,
  status: ExitStatus,
  exitCode: Schema.optional(Schema.Number),
  signal: Schema.optional(Schema.String),
  elapsedMs: Schema.Number,
  logTail: LogTail,
  diagnosis: Schema.optional(Diagnosis)
}) {
  override get message(): string {
    return `dockerd (pid ${this.pid}) exited before it was ready: ${describe(this.status)} after ${this.elapsedMs}ms${formatDiagnosis(this.diagnosis)}${formatTail(this.logTail)}`
  }
}

/**
 * The daemon stayed alive but was not ready by the deadline.
 *
 * @since 0.1.0
 * @category errors
 */
export class DaemonNotReady extends Schema.TaggedError<DaemonNotReady>()("DaemonNotReady", {
  pid: Schema.Number,
  socket: Schema.String,
  deadlineMs: Schema.Number,
  elapsedMs: Schema.Number,
  attempts: Schema.Number,
  lastFailures: Schema.Array(ProbeFailure),
  logTail: LogTail,
  diagnosis: Schema.optional(Diagnosis)
}) {
  override get message(): string {
    const failures = this.lastFailures.map((f) => f.message).join("; ")
    const who = this.pid > 0 ? `dockerd (pid ${this.pid})` : "the Docker daemon"
    return `${who} was not ready on ${this.socket} within ${this.deadlineMs}ms (${this.attempts} attempts; last: ${failures || "none"})${formatDiagnosis(this.diagnosis)}${formatTail(this.logTail)}`
  }
}

/**
 * The daemon died after it was ready, and no restart was left.
 *
 * @since 0.1.0
 * @category errors
 */
export class DaemonDied extends Schema.TaggedError<DaemonDied>()("DaemonDied", {
  pid: Schema.Number,
  status: ExitStatus,
  exitCode: Schema.optional(Schema.Number),
  signal: Schema.optional(Schema.String),
  restarts: Schema.Number,
  logTail: LogTail,
  diagnosis: Schema.optional(Diagnosis)
}) {
  override get message(): string {
    return `dockerd (pid ${this.pid}) died after it was ready: ${describe(this.status)} (restarts: ${this.restarts})${formatDiagnosis(this.diagnosis)}${formatTail(this.logTail)}`
  }
}

/**
 * The daemon failed its liveness probe too many times in a row.
 *
 * @since 0.1.0
 * @category errors
 */
export class DaemonUnhealthy extends Schema.TaggedError<DaemonUnhealthy>()("DaemonUnhealthy", {
  pid: Schema.Number,
  consecutiveFailures: Schema.Number,
  lastFailure: ProbeFailure,
  restarts: Schema.Number,
  logTail: LogTail
}) {
  override get message(): string {
    return `dockerd (pid ${this.pid}) failed ${this.consecutiveFailures} liveness checks in a row (last: ${this.lastFailure.message}; restarts: ${this.restarts})${formatTail(this.logTail)}`
  }
}

/**
 * Every way a start can fail before the daemon is ready.
 *
 * @since 0.1.0
 * @category errors
 */
export type StartError =
  | InvalidConfig
  | DockerNotInstalled
  | PidfileInUse
  | DaemonAlreadyRunning
  | SocketPathIsDirectory
  | SocketInUse
  | DirectoryNotWritable
  | SocketModeNotApplied
  | SpawnFailed
  | DaemonCrashed
  | DaemonNotReady

/**
 * Every way supervision can end.
 *
 * @since 0.1.0
 * @category errors
 */
export type SupervisionError = DaemonDied | DaemonUnhealthy
