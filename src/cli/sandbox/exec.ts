/**
 * `sandbox-docker sandbox exec NAME -- CMD [ARGS...]`: a command run in a
 * sandbox, its output streamed, its exit code the CLI's.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Effect from "effect/Effect"
import * as Shared from "../options.js"
import * as Planned from "../planned.js"
import { CommandNotFound } from "./errors.js"
import { attach } from "./lookup.js"
import * as SandboxOptions from "./options.js"
import { exitCodeOf, forward } from "./output.js"

const config = {
  engine: SandboxOptions.engine,
  json: Shared.json,
  sandbox: SandboxOptions.sandbox,
  command: Args.text({ name: "CMD" }).pipe(
    Args.withDescription("the command and its arguments (after --)"),
    Args.atLeast(1)
  )
}

/**
 * What `sandbox exec` will do, validated.
 *
 * @since 0.1.0
 * @category models
 */
export interface SandboxExecPlan {
  readonly _tag: "SandboxExec"
  readonly engine: string
  readonly sandbox: string
  readonly argv: readonly [string, ...Array<string>]
  readonly json: boolean
}

const plan = (
  opts: Shared.ValuesOf<typeof config>
): Effect.Effect<SandboxExecPlan, Shared.CliInputError> =>
  Effect.gen(function* () {
    const [first, ...rest] = opts.command
    return {
      _tag: "SandboxExec",
      engine: yield* SandboxOptions.decodeEngine(opts.engine),
      sandbox: yield* SandboxOptions.decodeSandbox(opts.sandbox),
      argv: [first, ...rest],
      json: opts.json
    } as const
  })

/**
 * Runs `sandbox exec`: the command inside, its output streamed, its exit
 * code returned.
 *
 * @since 0.1.0
 * @category commands
 */
export const execute = (execPlan: SandboxExecPlan) =>
  Effect.gen(function* () {
    const { manager } = yield* attach(execPlan.engine, execPlan.sandbox)
    const handle = yield* manager
      .exec(execPlan.argv, { killGrace: "3 seconds", tailLines: 1, keepOutput: 1024 * 1024 })
      .pipe(
        Effect.catchTag("BinaryNotFound", (error) =>
          Effect.fail(new CommandNotFound({ command: error.binary, searched: error.searched }))
        )
      )
    yield* forward(handle.output, execPlan.json)
    const code = yield* exitCodeOf(handle)
    if (execPlan.json) {
      yield* Effect.sync(() =>
        process.stdout.write(JSON.stringify({ event: "exited", exitCode: code }) + "\n")
      )
    }
    return code
  }).pipe(Effect.scoped)

/**
 * The `sandbox exec` command, with what to do with its validated plan.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Planned.command(
  "exec",
  config,
  plan,
  "Run a command in a sandbox (sandbox-docker sandbox exec NAME -- CMD ARGS...), streaming its output; exits with the command's exit code (128+n for a signal n, 127 when it is not in the sandbox). Other exit codes as below."
)
