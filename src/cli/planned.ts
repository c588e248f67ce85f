/**
 * The shape every `sandbox-docker` command shares: its options and
 * arguments are first validated into a plan (nothing is started, bad input
 * is a typed error), then the plan is handed to whatever runs it. Its help
 * ends with the exit codes.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Effect from "effect/Effect"
import type * as Types from "effect/Types"
import { EXIT_CODES_HELP } from "./ExitCode.js"

/**
 * A command named `name` taking `config` (options and arguments), whose
 * parsed values `plan` validates; the result takes what to do with the plan.
 * `description` is its help, followed by the exit codes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const command =
  <Name extends string, const Config extends Command.Command.Config, Plan, PlanError>(
    name: Name,
    config: Config,
    plan: (
      values: Types.Simplify<Command.Command.ParseConfig<Config>>
    ) => Effect.Effect<Plan, PlanError>,
    description: string
  ) =>
  <E, R>(handler: (plan: Plan) => Effect.Effect<void, E, R>) =>
    Command.make(name, config, (values) => Effect.flatMap(plan(values), handler)).pipe(
      Command.withDescription(`${description}\n\n${EXIT_CODES_HELP}`)
    )
