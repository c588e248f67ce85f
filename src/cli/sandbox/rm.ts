/**
 * `sandbox-docker sandbox rm NAME`: a sandbox removed, Docker inside and
 * its containers first.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ContainerProcessManager from "../../ContainerProcessManager.js"
import * as DockerEngine from "../../DockerEngine.js"
import * as SandboxDocker from "../../SandboxDocker.js"
import * as Detached from "../detachedDockerd.js"
import * as Shared from "../options.js"
import * as Planned from "../planned.js"
import * as Reporter from "../Reporter.js"
import { find } from "./lookup.js"
import * as SandboxOptions from "./options.js"

/**
 * What `sandbox rm` will do, validated.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxRmPlan {
  readonly _tag: "SandboxRm"
  readonly engine: string
  readonly sandbox: string
  readonly stopGrace: Duration.Duration
  readonly json: boolean
}

const config = {
  engine: SandboxOptions.engine,
  stopGrace: Shared.duration(
    "stop-grace",
    "time between SIGTERM and SIGKILL for Docker inside (default 10s)"
  ),
  json: Shared.json,
  sandbox: SandboxOptions.sandbox
}

const plan = (
  opts: Shared.ValuesOf<typeof config>
): Effect.Effect<SandboxRmPlan, Shared.CliInputError> =>
  Effect.gen(function* () {
    const grace = yield* Shared.decodeDuration("stop-grace", opts.stopGrace)
    return {
      _tag: "SandboxRm",
      engine: yield* SandboxOptions.decodeEngine(opts.engine),
      sandbox: yield* SandboxOptions.decodeSandbox(opts.sandbox),
      stopGrace: Option.getOrElse(grace, () => Duration.seconds(10)),
      json: opts.json
    } as const
  })

/**
 * Runs `sandbox rm`: inner containers killed and removed, dockerd inside
 * stopped (SIGTERM, grace, SIGKILL), then the container and its volumes.
 *
 * @since 0.1.0
 * @category commands
 */
export const execute = (rmPlan: SandboxRmPlan) =>
  Effect.gen(function* () {
    const reporter = Reporter.make({ json: rmPlan.json })
    const started = Date.now()
    const engine = yield* DockerEngine.make(rmPlan.engine)
    const found = yield* find(engine, rmPlan.sandbox)
    if (found.running && found.docker) {
      const manager = yield* ContainerProcessManager.make({
        socket: rmPlan.engine,
        containerId: found.id
      })
      yield* SandboxDocker.removeInnerContainers(manager)
      const stopped = yield* Detached.stop(manager, rmPlan.stopGrace)
      if (Option.isSome(stopped)) {
        yield* reporter.info(
          "docker-stopped",
          { id: found.id, name: found.name, elapsedMs: Date.now() - started },
          `stopped Docker inside ${found.name}`
        )
      }
    }
    yield* engine.request("DELETE", `/containers/${found.id}?force=true&v=true`).pipe(
      Effect.catchIf(
        (error) => error._tag === "EngineBadAnswer" && error.status === 404,
        () => Effect.void
      )
    )
    yield* reporter.info(
      "removed",
      { id: found.id, name: found.name, elapsedMs: Date.now() - started },
      `removed sandbox ${found.name} (${found.id.slice(0, 12)})`
    )
  }).pipe(Effect.scoped)

/**
 * The `sandbox rm` command, with what to do with its validated plan.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Planned.command(
  "rm",
  config,
  plan,
  "Remove a sandbox: kill and remove the containers inside, stop Docker inside (SIGTERM, --stop-grace, SIGKILL), then remove the sandbox container and its volume. A sandbox that is not there exits 2."
)
