/**
 * `sandbox-docker sandbox`: create a sandbox (a container on a host engine,
 * optionally with Docker inside), run a command in it, run docker commands
 * in it, and remove it. A sandbox outlives the CLI process that created it:
 * each command finds it again by name or id on the host engine (it carries
 * the label `sandbox-docker=sandbox`, see `lookup.ts`), and Docker inside
 * runs detached (see `../detachedDockerd.ts`).
 *
 * As with `up`, the options are first validated into a plan (nothing
 * started), then the plan is run. One module a subcommand: `create.ts`,
 * `exec.ts`, `docker.ts`, `rm.ts`, `gc.ts`, `ls.ts`, `renew.ts`.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import type * as Effect from "effect/Effect"
import * as Create from "./create.js"
import * as Docker from "./docker.js"
import * as Exec from "./exec.js"
import * as Gc from "./gc.js"
import * as Ls from "./ls.js"
import * as Renew from "./renew.js"
import * as Rm from "./rm.js"

/**
 * The errors only the `sandbox` commands raise.
 *
 * @since 0.1.0
 * @category errors
 */
export { CommandNotFound, SandboxNotFound } from "./errors.js"

/**
 * `sandbox create`: its plan, and running it.
 *
 * @since 0.1.0
 * @category commands
 */
export { execute as executeCreate, type SandboxCreatePlan } from "./create.js"

/**
 * `sandbox exec`: its plan, and running it.
 *
 * @since 0.1.0
 * @category commands
 */
export { execute as executeExec, type SandboxExecPlan } from "./exec.js"

/**
 * `sandbox docker`: its verbs, its plan, and running it.
 *
 * @since 0.1.0
 * @category commands
 */
export { type DockerVerb, execute as executeDocker, type SandboxDockerPlan } from "./docker.js"

/**
 * `sandbox rm`: its plan, and running it.
 *
 * @since 0.1.0
 * @category commands
 */
export { execute as executeRm, type SandboxRmPlan } from "./rm.js"

/**
 * `sandbox gc`: its plan, and running it.
 *
 * @since 0.2.0
 * @category commands
 */
export { execute as executeGc, type SandboxGcPlan } from "./gc.js"

/**
 * `sandbox ls`: its plan, and running it.
 *
 * @since 0.2.0
 * @category commands
 */
export { execute as executeLs, type SandboxLsPlan } from "./ls.js"

/**
 * `sandbox renew`: its plan, and running it.
 *
 * @since 0.2.0
 * @category commands
 */
export { execute as executeRenew, type SandboxRenewPlan } from "./renew.js"

/**
 * What a `sandbox` command will do, validated.
 *
 * @since 0.1.0
 * @category models
 */
export type SandboxPlan =
  | Create.SandboxCreatePlan
  | Exec.SandboxExecPlan
  | Docker.SandboxDockerPlan
  | Rm.SandboxRmPlan
  | Gc.SandboxGcPlan
  | Ls.SandboxLsPlan
  | Renew.SandboxRenewPlan

/**
 * Runs a `sandbox` plan; `exec` succeeds with the command's exit code.
 *
 * @since 0.1.0
 * @category commands
 */
export const execute = (plan: SandboxPlan): Effect.Effect<number | void, unknown> => {
  switch (plan._tag) {
    case "SandboxCreate":
      return Create.execute(plan)
    case "SandboxExec":
      return Exec.execute(plan)
    case "SandboxDocker":
      return Docker.execute(plan)
    case "SandboxRm":
      return Rm.execute(plan)
    case "SandboxGc":
      return Gc.execute(plan)
    case "SandboxLs":
      return Ls.execute(plan)
    case "SandboxRenew":
      return Renew.execute(plan)
  }
}

/**
 * The `sandbox` command and its subcommands, with what to do with a plan.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = <E, R>(handler: (plan: SandboxPlan) => Effect.Effect<void, E, R>) =>
  Command.make("sandbox").pipe(
    Command.withDescription(
      "Create a sandbox (a container on a host Docker Engine, optionally with Docker inside), run commands and docker commands in it, remove it; ls lists them with their owners and Docker's restarts; gc removes those whose owner is gone or whose lease ran out."
    ),
    Command.withSubcommands([
      Create.command(handler),
      Exec.command(handler),
      Docker.command(handler),
      Rm.command(handler),
      Gc.command(handler),
      Ls.command(handler),
      Renew.command(handler)
    ])
  )
