/**
 * `sandbox-docker sandbox renew NAME`: extends the lease of a sandbox made
 * with `sandbox create --lease`, from now, by its own duration or `--lease`.
 *
 * @since 0.2.0
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as DockerEngine from "../../DockerEngine.js"
import * as SandboxLease from "../../SandboxLease.js"
import * as Shared from "../options.js"
import * as Planned from "../planned.js"
import * as Reporter from "../Reporter.js"
import { SandboxNotFound } from "./errors.js"
import * as SandboxOptions from "./options.js"

/**
 * What `sandbox renew` will do, validated.
 *
 * @since 0.2.0
 * @category models
 */
export interface SandboxRenewPlan {
  readonly _tag: "SandboxRenew"
  readonly engine: string
  readonly sandbox: string
  readonly lease: Option.Option<Duration.Duration>
  readonly json: boolean
}

const config = {
  engine: SandboxOptions.engine,
  lease: Shared.duration("lease", "the new lease, from now (default: the sandbox's own)"),
  json: Shared.json,
  sandbox: SandboxOptions.sandbox
}

const plan = (
  opts: Shared.ValuesOf<typeof config>
): Effect.Effect<SandboxRenewPlan, Shared.CliInputError> =>
  Effect.gen(function* () {
    return {
      _tag: "SandboxRenew",
      engine: yield* SandboxOptions.decodeEngine(opts.engine),
      sandbox: yield* SandboxOptions.decodeSandbox(opts.sandbox),
      lease: yield* Shared.decodeDuration("lease", opts.lease),
      json: opts.json
    } as const
  })

const Labelled = Schema.Struct({
  Id: Schema.String,
  Config: Schema.Struct({
    Labels: Schema.NullishOr(Schema.Record({ key: Schema.String, value: Schema.String }))
  })
})

/**
 * Runs `sandbox renew`: a `renewed` event with the new expiry.
 *
 * @since 0.2.0
 * @category commands
 */
export const execute = (renewPlan: SandboxRenewPlan) =>
  Effect.gen(function* () {
    const reporter = Reporter.make({ json: renewPlan.json })
    const engine = yield* DockerEngine.make(renewPlan.engine)
    const sandbox = renewPlan.sandbox
    const found = yield* engine
      .request("GET", `/containers/${encodeURIComponent(sandbox)}/json`, { schema: Labelled })
      .pipe(
        Effect.catchIf(
          (error) => error._tag === "EngineBadAnswer" && error.status === 404,
          () => new SandboxNotFound({ sandbox, reason: "no such sandbox on the host engine" })
        )
      )
    const labels = found.Config.Labels ?? {}
    if (labels[SandboxLease.SANDBOX_LABEL] !== "sandbox") {
      return yield* new SandboxNotFound({
        sandbox,
        reason: "this container is not a sandbox (no label sandbox-docker=sandbox)"
      })
    }
    const path = labels[SandboxLease.LEASE_LABEL]
    if (path === undefined) {
      return yield* new Shared.InvalidArguments({
        option: "lease",
        problem: `sandbox ${sandbox} has no lease (it was created without --lease): nothing to renew`
      })
    }
    const renewed = yield* SandboxLease.renewFile(
      path,
      Option.getOrUndefined(renewPlan.lease)
    ).pipe(Effect.provide(NodeFileSystem.layer))
    const expiresAt = new Date(renewed.expiresAt).toISOString()
    yield* reporter.info(
      "renewed",
      { id: found.Id, sandbox, lease: path, expiresAt },
      `renewed the lease of ${sandbox} until ${expiresAt}`
    )
  }).pipe(Effect.scoped)

/**
 * The `sandbox renew` command, with what to do with its validated plan.
 *
 * @since 0.2.0
 * @category commands
 */
export const command = Planned.command(
  "renew",
  config,
  plan,
  "Renew the lease of a sandbox created with --lease: from now, for its own duration or --lease. A sandbox without a lease exits 2; a lease file that cannot be written exits 8."
)
