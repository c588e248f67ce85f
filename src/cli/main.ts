/**
 * The `sandbox-docker` command line: argument parsing, the runtime, signals
 * and exit codes. Bad arguments print a message and exit 2, never a stack
 * trace; SIGINT or SIGTERM stop the daemon cleanly and exit 0.
 *
 * @since 0.1.0
 */
import { Command, ValidationError } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { Cause, Effect, Exit, Fiber, Layer, Logger, LogLevel } from "effect"
import * as LocalProcessManager from "../LocalProcessManager.js"
import { ExitCode, forError } from "./ExitCode.js"
import * as Reporter from "./Reporter.js"
import { up } from "./up.js"
import { wait } from "./wait.js"

const root = Command.make("sandbox-docker").pipe(
  Command.withDescription(
    "Start a Docker daemon, know the moment it is ready, say exactly why when it is not."
  ),
  Command.withSubcommands([up, wait])
)

const cli = Command.run(root, { name: "sandbox-docker", version: "0.1.0" })

/** Options that take no value. */
const BOOLEAN_OPTIONS = new Set(["--json", "--help", "-h", "--version", "--wizard"])

/**
 * Splits `--opt=value` into `--opt value`, as Docker's own CLI accepts both;
 * a value that itself starts with `-` (`--arg=--debug`) is kept whole.
 *
 * @since 0.1.0
 * @category parsing
 */
export const normalizeArgv = (argv: ReadonlyArray<string>): ReadonlyArray<string> => {
  const out: Array<string> = []
  let expectValue = false
  for (const token of argv) {
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

const isJson = (argv: ReadonlyArray<string>) => argv.includes("--json")

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
  const program = cli(["node", "sandbox-docker", ...normalizeArgv(argv)]).pipe(
    Effect.provide(Layer.mergeAll(NodeContext.layer, LocalProcessManager.layer)),
    Logger.withMinimumLogLevel(logLevel()),
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withLeveledConsole(Logger.logfmtLogger)))
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

const exitCodeOf = (exit: Exit.Exit<unknown, unknown>, reporter: Reporter.Reporter, stopping: boolean): number => {
  if (Exit.isSuccess(exit)) return ExitCode.ok
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
    reporter.error({ _tag: "InternalError", message: Cause.pretty(exit.cause).split("\n")[0] ?? "internal error" })
  )
  return ExitCode.internal
}
