/**
 * A warm pool: Docker-enabled sandboxes created and made ready ahead of
 * time (Docker inside answering, images pre-pulled), so that a claim hands
 * one out at once.
 *
 * Built on Effect's `Pool` (one pool per spec): `claim` is scoped, and the
 * claimed sandbox is invalidated in the pool before it goes back, so when
 * the claim's scope closes it is removed, never handed to a second user,
 * and the pool makes a new one in the background. A sandbox that waits in
 * the pool longer than `idleLifetime` is replaced by a fresh one. Closing
 * the pool's scope removes every sandbox it made (a claimed one once its
 * claim ends).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Pool from "effect/Pool"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { InvalidConfig } from "./errors.js"
import { DurationFromInput } from "./internal/duration.js"
import type { ReadinessPolicy } from "./ReadinessPolicy.js"
import * as Sandbox from "./Sandbox.js"
import * as SandboxDocker from "./SandboxDocker.js"

/**
 * A pool that hands out ready things of type `A`.
 *
 * @since 0.1.0
 * @category models
 */
export interface WarmPool<A, E> {
  /**
   * A ready one, for the scope: when the scope closes it is removed and the
   * pool makes another in the background. Waits when none is ready; fails
   * with the error of making one when that failed.
   */
  readonly claim: Effect.Effect<A, E, Scope.Scope>
  /** Waits until one is ready in the pool (or making one failed). */
  readonly awaitReady: Effect.Effect<void, E>
}

/**
 * A pool of Docker-enabled sandboxes.
 *
 * @since 0.1.0
 * @category models
 */
export type SandboxPool = WarmPool<Sandbox.Sandbox, PoolError>

/**
 * Why a pooled sandbox could not be made: the sandbox, its Docker, or a
 * pre-pull failed.
 *
 * @since 0.1.0
 * @category errors
 */
export type PoolError =
  | Effect.Effect.Error<ReturnType<typeof Sandbox.create>>
  | InvalidConfig
  | Sandbox.DockerUnavailable
  | SandboxDocker.DockerError

/**
 * The pool's settings.
 *
 * @since 0.1.0
 * @category models
 */
export class PoolSettings extends Schema.Class<PoolSettings>("PoolSettings")({
  /** How many sandboxes are kept ready (1-64). */
  size: Schema.Number.pipe(
    Schema.filter(
      (size) =>
        (Number.isInteger(size) && size >= 1 && size <= 64) || "a pool holds 1 to 64 sandboxes"
    )
  ),
  /** Images pulled into each sandbox before it counts as ready. */
  images: Schema.optionalWith(Schema.Array(SandboxDocker.ImageReference), {
    default: () => []
  }),
  /**
   * How long a sandbox may wait in the pool unclaimed before it is replaced
   * by a fresh one (default 30 minutes).
   */
  idleLifetime: Schema.optionalWith(DurationFromInput, {
    default: () => Duration.minutes(30)
  })
}) {}

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** What each sandbox is; Docker is always enabled. */
  readonly spec: Sandbox.SandboxSpec | typeof Sandbox.SandboxSpec.Encoded
  /** How many are kept ready. */
  readonly size: number
  /** Images pre-pulled into each. */
  readonly images?: ReadonlyArray<string> | undefined
  /** How long one may wait unclaimed before it is replaced (default 30 minutes). */
  readonly idleLifetime?: Duration.DurationInput | undefined
  /** The host engine's unix socket. */
  readonly engineSocket: string
  readonly readiness?: ReadinessPolicy | undefined
  readonly stopGrace?: Duration.DurationInput | undefined
  readonly dockerVia?: Sandbox.CreateOptions["dockerVia"]
}

/**
 * A warm pool of anything a scoped `acquire` makes: `size` kept ready,
 * each replaced once it has waited `idleLifetime`, each removed (its scope
 * closed) when its claim ends or the pool's scope closes. The base of
 * {@link make}; for a pool of one's own things (and for tests under
 * `TestClock`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromAcquire = <A, E, R>(
  acquire: Effect.Effect<A, E, R>,
  options: { readonly size: number; readonly idleLifetime: Duration.DurationInput }
): Effect.Effect<WarmPool<A, E>, never, Scope.Scope | Exclude<R, Scope.Scope>> =>
  Effect.map(
    Pool.makeWithTTL({
      acquire,
      min: options.size,
      max: options.size,
      // Counted from when it was made: a claimed one is removed at release
      // anyway, an unclaimed one is replaced after its lifetime.
      timeToLive: options.idleLifetime,
      timeToLiveStrategy: "creation"
    }) as Effect.Effect<Pool.Pool<A, E>, never, Scope.Scope | Exclude<R, Scope.Scope>>,
    (pool) => ({
      claim: Effect.tap(Pool.get(pool), (item) =>
        // Runs before the pool's own release: the item goes back invalid,
        // so the pool removes it and makes another in the background.
        Effect.addFinalizer(() => Pool.invalidate(pool, item))
      ),
      // Held for no time and not invalidated: nobody used it.
      awaitReady: Effect.scoped(Effect.asVoid(Pool.get(pool)))
    })
  )

/**
 * Decodes the pool's settings, failing with `InvalidConfig`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeSettings = (
  input: typeof PoolSettings.Encoded
): Effect.Effect<PoolSettings, InvalidConfig> =>
  Schema.decodeUnknown(PoolSettings, { errors: "first" })(input).pipe(
    Effect.mapError((error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
      return new InvalidConfig({
        field: "pool",
        problem:
          issue === undefined
            ? error.message
            : `${issue.path.length > 0 ? `${issue.path.join(".")}: ` : ""}${issue.message}`
      })
    })
  )

/**
 * Makes a pool of `size` Docker-enabled sandboxes of `spec` on the engine at
 * `engineSocket`, filled in the background from now on. Each is ready when
 * Docker inside answers and every image in `images` is pulled.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fn("SandboxPool.make")(function* (options: Options) {
  const settings = yield* decodeSettings({
    size: options.size,
    images: options.images ?? [],
    idleLifetime: options.idleLifetime ?? Duration.minutes(30)
  })
  const spec = yield* Sandbox.decodeSpec(options.spec)
  const docker = new Sandbox.SandboxSpec({ ...spec, dockerEnabled: true })
  const acquire = Effect.gen(function* () {
    const sandbox = yield* Sandbox.create(docker, {
      engineSocket: options.engineSocket,
      readiness: options.readiness,
      stopGrace: options.stopGrace,
      dockerVia: options.dockerVia
    })
    yield* sandbox.daemon
    for (const image of settings.images) {
      yield* Effect.scoped(Effect.flatMap(sandbox.docker.pull(image), (pull) => pull.wait))
    }
    return sandbox
  }).pipe(Effect.withSpan("SandboxPool.acquire"))
  const pool: SandboxPool = yield* fromAcquire(acquire, settings)
  return pool
})
