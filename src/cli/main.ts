/**
 * The `sandbox-docker` command line: argument parsing, the runtime, signals
 * and exit codes. The arguments are first turned into a validated plan
 * ({@link parse}: nothing is started), then the plan is run. Bad arguments
 * print a message naming the problem and exit 2, never a stack trace;
 * SIGINT or SIGTERM stop the daemon cleanly and exit 0.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Cause from "effect/Cause"
import type * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Dockerd from "../Dockerd.js"
import * as Down from "./down.js"
import { ExitCode, forError } from "./ExitCode.js"
import { type CliInputError, InvalidArguments, InvalidUsage } from "./options.js"
import * as Reporter from "./Reporter.js"
import * as SandboxCli from "./sandbox/index.js"
import * as Up from "./up.js"
import * as Wait from "./wait.js"

/**
 * What the command line asks for, validated.
 *
 * @since 0.1.0
 * @category models
 */
export type Plan = Up.UpPlan | Down.DownPlan | Wait.WaitPlan | SandboxCli.SandboxPlan

/** The command tree, with what each command does with its plan. */
const rootWith = (handler: (plan: Plan) => Effect.Effect<void>) =>
  Command.make("sandbox-docker").pipe(
    Command.withDescription(
      "Start a Docker daemon, know the moment it is ready, say exactly why when it is not."
    ),
    Command.withSubcommands([
      Up.command(handler),
      Down.command(handler),
      Wait.command(handler),
      SandboxCli.command(handler)
    ])
  )

/** Options that take no value. */
const BOOLEAN_OPTIONS = new Set([
  "--json",
  "--help",
  "-h",
  "--version",
  "--wizard",
  "--insecure-tcp",
  "--docker",
  "--replace",
  "--dry-run"
])

/** Options that take a value, of every command. */
const VALUE_OPTIONS = new Set([
  "--dockerd",
  "--socket",
  "--socket-mode",
  "--socket-group",
  "--tcp",
  "--tls-ca",
  "--tls-cert",
  "--tls-key",
  "--data-root",
  "--exec-root",
  "--pidfile",
  "--profile",
  "--arg",
  "--network",
  "--policy",
  "--deadline",
  "--stop-grace",
  "--restart",
  "--max-restarts",
  "--pid",
  "--completions",
  "--engine",
  "--image",
  "--runtime",
  "--cpu",
  "--memory",
  "--env",
  "--name",
  "--owner",
  "--lease"
])

/** The options part of argv: what comes before `--` (after it, a command's own words). */
const beforeSeparator = (argv: ReadonlyArray<string>): ReadonlyArray<string> => {
  const separator = argv.indexOf("--")
  return separator === -1 ? argv : argv.slice(0, separator)
}

/**
 * Splits `--opt=value` into `--opt value`, as Docker's own CLI accepts both;
 * a value that itself starts with `-` (`--arg=--debug`) is kept whole.
 * Everything from a `--` on (a command's own words) is left as it is.
 *
 * @since 0.1.0
 * @category parsing
 */
export const normalizeArgv = (argv: ReadonlyArray<string>): ReadonlyArray<string> => {
  const out: Array<string> = []
  let expectValue = false
  for (const [index, token] of argv.entries()) {
    if (token === "--" && !expectValue) {
      out.push(...argv.slice(index))
      break
    }
    if (expectValue) {
      out.push(token)
      expectValue = false
      continue
    }
    const match = /^(--[A-Za-z][A-Za-z0-9-]*)=([\s\S]*)$/.exec(token)
    if (match !== null && !BOOLEAN_OPTIONS.has(match[1] ?? "")) {
      out.push(match[1] ?? "", match[2] ?? "")
      continue
    }
    out.push(token)
    expectValue = token.startsWith("--") && !token.includes("=") && !BOOLEAN_OPTIONS.has(token)
  }
  return out
}

/**
 * A value-taking option at the very end, or with an empty value, has no
 * value. (The parser would take a repeatable one, `--arg`, as given zero
 * times, silently.)
 */
const missingValue = (argv: ReadonlyArray<string>): InvalidArguments | undefined => {
  const last = argv.at(-1)
  if (last !== undefined && VALUE_OPTIONS.has(last)) {
    return new InvalidArguments({ option: last.slice(2), problem: "needs a value" })
  }
  const empty = argv.findIndex((token, i) => VALUE_OPTIONS.has(token) && argv[i + 1] === "")
  return empty === -1
    ? undefined
    : new InvalidArguments({
        option: (argv[empty] ?? "").slice(2),
        problem: "needs a value, not an empty string"
      })
}

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g")

/** What the parser says about bad arguments, as plain text. */
const usageProblem = (said: ReadonlyArray<string>, error: ValidationError.ValidationError) => {
  const text = said.join("\n").replace(ANSI, "").trim()
  return text.length > 0 ? text : error._tag
}

/**
 * Reads `argv` (without `node` and the script) into a validated plan, or
 * fails with what is wrong with it. Starts nothing, prints only what was
 * asked for (`--help`, `--version`). `None`: nothing to run (help, version).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (
  argv: ReadonlyArray<string>
): Effect.Effect<Option.Option<Plan>, CliInputError> =>
  Effect.gen(function* () {
    const normalized = normalizeArgv(argv)
    const missing = missingValue(beforeSeparator(normalized))
    if (missing !== undefined) return yield* missing
    let chosen: Plan | undefined
    const cli = Command.run(
      rootWith((plan) =>
        Effect.sync(() => {
          chosen = plan
        })
      ),
      { name: "sandbox-docker", version: "0.1.0" }
    )
    // The parser prints its complaints on the console's error stream: keep
    // them for the error instead.
    const console = yield* Effect.console
    const said: Array<string> = []
    const keep = (...args: ReadonlyArray<unknown>) => void said.push(args.map(String).join(" "))
    const quiet: Console.Console = {
      ...console,
      error: (...args) => Effect.sync(() => keep(...args)),
      unsafe: { ...console.unsafe, error: keep }
    }
    yield* cli(["node", "sandbox-docker", ...normalized]).pipe(
      Effect.withConsole(quiet),
      Effect.catchIf(ValidationError.isValidationError, (error) =>
        Effect.fail(new InvalidUsage({ problem: usageProblem(said, error) }))
      ),
      Effect.provide(NodeContext.layer)
    )
    return Option.fromNullable(chosen)
  })

/** What the commands' runs are. */
type Executed =
  | ReturnType<typeof Up.execute>
  | ReturnType<typeof Down.execute>
  | ReturnType<typeof Wait.execute>
  | ReturnType<typeof SandboxCli.execute>

/**
 * Runs a validated plan.
 *
 * @since 0.1.0
 * @category running
 */
export const execute = (
  plan: Plan
): Effect.Effect<number | void, Effect.Effect.Error<Executed>, Effect.Effect.Context<Executed>> => {
  switch (plan._tag) {
    case "Up":
      return Up.execute(plan)
    case "Down":
      return Down.execute(plan)
    case "Wait":
      return Wait.execute(plan)
    default:
      return SandboxCli.execute(plan)
  }
}

const isJson = (argv: ReadonlyArray<string>) => beforeSeparator(argv).includes("--json")

/** Log level from SANDBOX_DOCKER_LOG (debug, info, warning, error, none); default: none. */
const logLevel = (): LogLevel.LogLevel => {
  switch ((process.env.SANDBOX_DOCKER_LOG ?? "").toLowerCase()) {
    case "debug":
      return LogLevel.Debug
    case "info":
      return LogLevel.Info
    case "warning":
    case "warn":
      return LogLevel.Warning
    case "error":
      return LogLevel.Error
    default:
      return LogLevel.None
  }
}

/**
 * Runs the CLI on `argv` (without `node` and the script) and resolves with
 * the exit code.
 *
 * @since 0.1.0
 * @category running
 */
export const main = (argv: ReadonlyArray<string>): Promise<number> => {
  const reporter = Reporter.make({ json: isJson(argv) })
  const program = parse(argv).pipe(
    Effect.flatMap((plan) => (Option.isSome(plan) ? execute(plan.value) : Effect.void)),
    Effect.provide(Layer.mergeAll(NodeContext.layer, Dockerd.layerNode)),
    Logger.withMinimumLogLevel(logLevel()),
    Effect.provide(
      Logger.replace(Logger.defaultLogger, Logger.withLeveledConsole(Logger.logfmtLogger))
    )
  )
  return new Promise((resolve) => {
    let stopping = false
    const fiber = Effect.runFork(program)
    const onSignal = () => {
      if (stopping) return
      stopping = true
      Effect.runFork(Fiber.interrupt(fiber))
    }
    process.on("SIGINT", onSignal)
    process.on("SIGTERM", onSignal)
    fiber.addObserver((exit) => {
      process.off("SIGINT", onSignal)
      process.off("SIGTERM", onSignal)
      resolve(exitCodeOf(exit, reporter, stopping))
    })
  })
}

const exitCodeOf = (
  exit: Exit.Exit<unknown, unknown>,
  reporter: Reporter.Reporter,
  stopping: boolean
): number => {
  if (Exit.isSuccess(exit)) return typeof exit.value === "number" ? exit.value : ExitCode.ok
  if (Cause.isInterruptedOnly(exit.cause)) return stopping ? ExitCode.ok : ExitCode.internal
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some") {
    const error = failure.value
    // @effect/cli has already printed what was wrong with the arguments.
    if (ValidationError.isValidationError(error)) return ExitCode.invalidInput
    if (typeof error === "object" && error !== null && "_tag" in error && "message" in error) {
      const reportable = error as Reporter.ReportableError
      Effect.runSync(reporter.error(reportable))
      return forError(reportable._tag)
    }
  }
  Effect.runSync(
    reporter.error({
      _tag: "InternalError",
      message: Cause.pretty(exit.cause).split("\n")[0] ?? "internal error"
    })
  )
  return ExitCode.internal
}
