/**
 * What happens to a daemon from preflight to stop, as events a CLI or a UI
 * can render. The JSON form of each is what `sandbox-docker --json` prints.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import type { ProbeOutcome } from "./Probe.js"
import type { ExitStatus } from "./ProcessStatus.js"

/**
 * A daemon's life as events.
 *
 * @since 0.1.0
 * @category models
 */
export type DaemonEvent = Data.TaggedEnum<{
  /** A dockerd already running for the same paths is stopped, to be replaced. */
  Replacing: { readonly pid: number; readonly foundBy: string }
  /** The preflight checks passed. */
  Preflight: { readonly elapsedMs: number }
  /** dockerd was spawned. */
  Spawned: {
    readonly pid: number
    readonly argv: ReadonlyArray<string>
    readonly elapsedMs: number
  }
  /** One probe of one readiness attempt finished. */
  Probe: { readonly attempt: number; readonly elapsedMs: number; readonly outcome: ProbeOutcome }
  /** The daemon is ready. */
  Ready: {
    readonly pid: number
    readonly socket: string
    readonly elapsedMs: number
    readonly attempts: number
    readonly serverVersion: string
    readonly apiVersion: string
    readonly storageDriver: string
    readonly restarts: number
  }
  /** A liveness check failed. */
  LivenessFailed: {
    readonly pid: number
    readonly consecutive: number
    readonly threshold: number
    readonly reason: string
  }
  /** The daemon is restarted after a failure. */
  Restarting: {
    readonly restart: number
    readonly maxRestarts: number
    readonly delayMs: number
    readonly reason: string
  }
  /** The daemon is being stopped. */
  Stopping: { readonly pid: number }
  /** The daemon and everything it started are gone. */
  Stopped: { readonly pid: number; readonly status: ExitStatus; readonly elapsedMs: number }
}>

/**
 * Constructors for {@link DaemonEvent}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const DaemonEvent = Data.taggedEnum<DaemonEvent>()

/**
 * Something that receives events.
 *
 * @since 0.1.0
 * @category models
 */
export type EventSink = (event: DaemonEvent) => Effect.Effect<void>
