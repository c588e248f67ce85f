/**
 * Every typed error of sandbox-docker. Each one is tagged data that carries
 * what a person needs to act: the file, the pid, the exit code or signal, the
 * last log lines, a diagnosis when the log shows a known cause.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
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
// ---------------------------------------------------------------------------

/**
 * A probe found the target not there yet: no socket, connection refused.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProbeNotYet extends Schema.TaggedError<ProbeNotYet>()("ProbeNotYet", {
  probe: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.probe}: not yet (${this.reason})`
  }
}

/**
 * A probe did not answer within its own timeout.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProbeTimedOut extends Schema.TaggedError<ProbeTimedOut>()("ProbeTimedOut", {
  probe: Schema.String,
  timeoutMs: Schema.Number
}) {
  override get message(): string {
    return `${this.probe}: no answer within ${this.timeoutMs}ms`
  }
}

/**
 * A probe got an answer, and the answer was a failure.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProbeFailed extends Schema.TaggedError<ProbeFailed>()("ProbeFailed", {
  probe: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
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
