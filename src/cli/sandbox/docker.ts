/**
 * `sandbox-docker sandbox docker NAME COMMAND [ARG...]`: a docker command
 * run against Docker inside a sandbox created with `--docker`, once that
 * Docker is ready.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { ProcessManagerShape } from "../../ProcessManager.js"
import type { ReadinessPolicy } from "../../ReadinessPolicy.js"
import * as Sandbox from "../../Sandbox.js"
import * as SandboxDocker from "../../SandboxDocker.js"
import * as Detached from "../detachedDockerd.js"
import * as Shared from "../options.js"
import * as Planned from "../planned.js"
import { attach } from "./lookup.js"
import * as SandboxOptions from "./options.js"
import { forward } from "./output.js"

const DOCKER_VERBS = ["pull", "run", "ps", "images", "logs", "rm", "rmi"] as const

/**
 * A docker command `sandbox docker` runs.
 *
 * @since 0.1.0
 * @category models
 */
export type DockerVerb = (typeof DOCKER_VERBS)[number]

/**
 * What `sandbox docker` will do, validated (the docker arguments are
 * validated again by `SandboxDocker` before anything runs).
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxDockerPlan {
  readonly _tag: "SandboxDocker"
  readonly engine: string
  readonly sandbox: string
  readonly verb: DockerVerb
  readonly args: ReadonlyArray<string>
  readonly policy: ReadinessPolicy
  readonly json: boolean
}

const config = {
  engine: SandboxOptions.engine,
  deadline: Shared.duration(
    "deadline",
    "give up when Docker inside is not ready after this long (default 60s)"
  ),
  json: Shared.json,
  sandbox: SandboxOptions.sandbox,
  verb: Args.choice(
    DOCKER_VERBS.map((verb) => [verb, verb] as const),
    { name: "COMMAND" }
  ).pipe(Args.withDescription(`one of ${DOCKER_VERBS.join(", ")}`)),
  args: Args.text({ name: "ARG" }).pipe(
    Args.withDescription(
      "pull IMAGE | run IMAGE [CMD...] | ps | images | logs C | rm C | rmi IMAGE"
    ),
    Args.repeated
  )
}

/** How many arguments each verb takes: [min, max]. */
const ARITY: Readonly<Record<DockerVerb, readonly [number, number]>> = {
  pull: [1, 1],
  run: [1, Number.POSITIVE_INFINITY],
  ps: [0, 0],
  images: [0, 0],
  logs: [1, 1],
  rm: [1, 1],
  rmi: [1, 1]
}

const plan = (
  opts: Shared.ValuesOf<typeof config>
): Effect.Effect<SandboxDockerPlan, Shared.CliInputError> =>
  Effect.gen(function* () {
    const [min, max] = ARITY[opts.verb]
    if (opts.args.length < min || opts.args.length > max) {
      return yield* new Shared.InvalidUsage({
        problem: `docker ${opts.verb} takes ${min === max ? min : `at least ${min}`} argument${max === 1 ? "" : "s"}, not ${opts.args.length}`
      })
    }
    const policy = yield* SandboxOptions.dockerReadiness(opts.deadline)
    return {
      _tag: "SandboxDocker",
      engine: yield* SandboxOptions.decodeEngine(opts.engine),
      sandbox: yield* SandboxOptions.decodeSandbox(opts.sandbox),
      verb: opts.verb,
      args: opts.args,
      policy,
      json: opts.json
    } as const
  })

/** Docker inside the sandbox, waited for until `docker info` answers. */
const dockerReady = (
  manager: ProcessManagerShape,
  found: { readonly name: string; readonly docker: boolean },
  policy: ReadinessPolicy
) =>
  Effect.gen(function* () {
    if (!found.docker) return yield* new Sandbox.DockerNotEnabled({ sandbox: found.name })
    const config = yield* Detached.attachConfig
    const state = yield* Detached.readState(manager)
    if (state._tag === "None") {
      return yield* new Sandbox.DockerNotEnabled({ sandbox: found.name })
    }
    const handle = Detached.handle(manager, state.pid, [])
    return yield* Detached.awaitReady(manager, handle, config, policy)
  })

/**
 * Runs `sandbox docker`: waits for Docker inside (lazily, `docker info`),
 * runs the command through `SandboxDocker`, prints its output.
 *
 * @since 0.1.0
 * @category commands
 */
export const execute = (dockerPlan: SandboxDockerPlan) =>
  Effect.gen(function* () {
    const { found, manager } = yield* attach(dockerPlan.engine, dockerPlan.sandbox)
    const ready = dockerReady(manager, found, dockerPlan.policy)
    const docker = SandboxDocker.make(manager, ready)
    const [first = "", ...rest] = dockerPlan.args
    const command = yield* ((): Effect.Effect<
      SandboxDocker.DockerCommand,
      SandboxDocker.DockerError,
      Scope.Scope
    > => {
      switch (dockerPlan.verb) {
        case "pull":
          return docker.pull(first)
        case "run":
          return docker.run(first, rest)
        case "ps":
          return docker.ps()
        case "images":
          return docker.images()
        case "logs":
          return docker.logs(first)
        case "rm":
          return docker.rm(first)
        case "rmi":
          return docker.rmi(first)
      }
    })()
    yield* forward(command.process.output, dockerPlan.json)
    yield* command.wait
  }).pipe(Effect.scoped)

/**
 * The `sandbox docker` command, with what to do with its validated plan.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Planned.command(
  "docker",
  config,
  plan,
  "Run a docker command in a sandbox created with --docker: pull IMAGE, run IMAGE [CMD...] (put -- before a CMD with options), ps, images, logs CONTAINER, rm CONTAINER, rmi IMAGE. Waits for Docker inside first. Image references are checked, and a value starting with - is refused (exit 2). A docker command that fails exits 7."
)
