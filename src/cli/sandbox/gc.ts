/**
 * `sandbox-docker sandbox gc`: removes the sandboxes whose lease ran out or
 * whose owner is gone (`Sandbox.reap`); with `--dry-run` only says which.
 * Containers without the label `sandbox-docker=sandbox` are never looked at.
 *
 * @since 0.2.0
 */
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Sandbox from "../../Sandbox.js"
import type { SandboxReapFailed } from "../../SandboxLease.js"
import * as Shared from "../options.js"
import * as Planned from "../planned.js"
import * as Reporter from "../Reporter.js"
import * as SandboxOptions from "./options.js"

/**
 * What `sandbox gc` will do, validated.
 *
 * @since 0.2.0
 * @category models
 */
export interface SandboxGcPlan {
  readonly _tag: "SandboxGc"
  readonly engine: string
  readonly dryRun: boolean
  readonly stopGrace: Duration.Duration
  readonly json: boolean
}

const config = {
  engine: SandboxOptions.engine,
  dryRun: Options.boolean("dry-run").pipe(
    Options.withDescription("only say which sandboxes would be removed, and why")
  ),
  stopGrace: Shared.duration(
    "stop-grace",
    "time between SIGTERM and SIGKILL for Docker inside a removed sandbox (default 5s)"
  ),
  json: Shared.json
}

const plan = (
  opts: Shared.ValuesOf<typeof config>
): Effect.Effect<SandboxGcPlan, Shared.CliInputError> =>
  Effect.gen(function* () {
    const grace = yield* Shared.decodeDuration("stop-grace", opts.stopGrace)
    return {
      _tag: "SandboxGc",
      engine: yield* SandboxOptions.decodeEngine(opts.engine),
      dryRun: opts.dryRun,
      stopGrace: Option.getOrElse(grace, () => Duration.seconds(5)),
      json: opts.json
    } as const
  })

/**
 * Runs `sandbox gc`: an event per sandbox (`reaped`, `would-reap`, `kept`,
 * each with the reason), then a `gc` summary. Fails with the first
 * `SandboxReapFailed` when a sandbox judged for removal could not be removed.
 *
 * @since 0.2.0
 * @category commands
 */
export const execute = (gcPlan: SandboxGcPlan) =>
  Effect.gen(function* () {
    const reporter = Reporter.make({ json: gcPlan.json })
    const judged = yield* Sandbox.reap({
      engineSocket: gcPlan.engine,
      dryRun: gcPlan.dryRun,
      stopGrace: gcPlan.stopGrace
    })
    const failures: Array<SandboxReapFailed> = []
    for (const sandbox of judged) {
      const fields = {
        id: sandbox.id,
        name: sandbox.name,
        owner: sandbox.owner ?? null,
        reason: sandbox.verdict.reason
      }
      if (sandbox.verdict._tag === "Keep") {
        yield* reporter.info("kept", fields, `kept ${sandbox.name}: ${sandbox.verdict.reason}`)
      } else if (gcPlan.dryRun) {
        yield* reporter.info(
          "would-reap",
          fields,
          `would remove ${sandbox.name}: ${sandbox.verdict.reason}`
        )
      } else if (sandbox.removed) {
        yield* reporter.info("reaped", fields, `removed ${sandbox.name}: ${sandbox.verdict.reason}`)
      } else if (sandbox.error !== undefined) {
        failures.push(sandbox.error)
      }
    }
    const count = (tag: "Keep" | "Reap") => judged.filter((j) => j.verdict._tag === tag).length
    yield* reporter.info(
      "gc",
      {
        dryRun: gcPlan.dryRun,
        sandboxes: judged.length,
        reaped: gcPlan.dryRun ? 0 : judged.filter((j) => j.removed).length,
        toReap: count("Reap"),
        kept: count("Keep"),
        failed: failures.length
      },
      gcPlan.dryRun
        ? `${count("Reap")} of ${judged.length} sandboxes would be removed`
        : `removed ${judged.filter((j) => j.removed).length} of ${judged.length} sandboxes`
    )
    const [first] = failures
    if (first !== undefined) return yield* first
  })

/**
 * The `sandbox gc` command, with what to do with its validated plan.
 *
 * @since 0.2.0
 * @category commands
 */
export const command = Planned.command(
  "gc",
  config,
  plan,
  "Remove the sandboxes whose lease ran out or whose owner is gone (inner containers, Docker inside, the container, its volume); keep every sandbox whose owner is alive with a valid lease, and never look at a container without the label sandbox-docker=sandbox. --dry-run only says which would go, and why. A sandbox that could not be removed exits 8."
)
