/**
 * The state of a process as a tagged union.
 *
 * The system this project re-creates reported `-1` for "still running" and for
 * "killed by a signal" alike, so a daemon killed by a signal looked alive.
 * Here a signal death is its own case and can never be mistaken for life.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The process has not exited yet.
 *
 * @since 0.1.0
 * @category models
 */
export class Running extends Schema.TaggedClass<Running>()("Running", {}) {}

/**
 * The process exited on its own with an exit code.
 *
 * @since 0.1.0
 * @category models
 */
export class Exited extends Schema.TaggedClass<Exited>()("Exited", {
  code: Schema.Int
}) {}

/**
 * The process was ended by a signal (for example `SIGKILL`).
 *
 * @since 0.1.0
 * @category models
 */
export class Signaled extends Schema.TaggedClass<Signaled>()("Signaled", {
  signal: Schema.String
}) {}

/**
 * How a process ended: an exit code or a signal.
 *
 * @since 0.1.0
 * @category models
 */
export const ExitStatus = Schema.Union(Exited, Signaled)

/**
 * @since 0.1.0
 * @category models
 */
export type ExitStatus = Exited | Signaled

/**
 * The state of a process: running, exited with a code, or ended by a signal.
 *
 * @since 0.1.0
 * @category models
 */
export const ProcessStatus = Schema.Union(Running, Exited, Signaled)

/**
 * @since 0.1.0
 * @category models
 */
export type ProcessStatus = Running | Exited | Signaled

/**
 * A short human description: `exit code 1`, `signal SIGKILL`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describe = (status: ProcessStatus): string => {
  switch (status._tag) {
    case "Running":
      return "running"
    case "Exited":
      return `exit code ${status.code}`
    case "Signaled":
      return `signal ${status.signal}`
  }
}
