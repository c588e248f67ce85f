/**
 * Who owns a sandbox, until when, and removing the sandboxes nobody owns any
 * more.
 *
 * Every sandbox container carries its owner in a label, fixed at create: by
 * default the creating process, as `process:HOST:BOOT-ID:PID:START` (the
 * host's name and boot id, the pid and the process's start time in clock
 * ticks from `/proc/PID/stat`), so that "the owner is gone" is decided
 * exactly, a reused pid included; or an id a platform chooses, which nobody
 * can check. A lease, if it has one, lives in a small JSON file on the host
 * (`{ owner, expiresAt, ttlMs }`) whose path is another label; the owner
 * renews it by rewriting the file. Labels cannot change after create, and a
 * file inside the sandbox could be rewritten by what runs in it: a file on
 * the host is out of the workload's reach and costs no Engine call a renewal.
 *
 * {@link reap} lists the engine's sandboxes (label `sandbox-docker=sandbox`,
 * never another container), judges each ({@link judge}: lease ran out, or
 * owner gone → reap) and removes the doomed: inner containers, dockerd inside,
 * the container and its volume, then the lease file.
 *
 * @since 0.2.0
 */
import { randomUUID } from "node:crypto"
import { hostname } from "node:os"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as ContainerProcessManager from "./ContainerProcessManager.js"
import * as DockerEngine from "./DockerEngine.js"
import * as SandboxDocker from "./SandboxDocker.js"

/**
 * The label every sandbox container carries, with the value `sandbox`.
 *
 * @since 0.2.0
 * @category labels
 */
export const SANDBOX_LABEL = "sandbox-docker"

/**
 * The label holding a sandbox's owner.
 *
 * @since 0.2.0
 * @category labels
 */
export const OWNER_LABEL = "sandbox-docker.owner"

/**
 * The label holding the path of a sandbox's lease file on its host.
 *
 * @since 0.2.0
 * @category labels
 */
export const LEASE_LABEL = "sandbox-docker.lease"

/**
 * The label holding the name of the host that created the sandbox: its
 * owner and lease file can only be checked there.
 *
 * @since 0.2.0
 * @category labels
 */
export const HOST_LABEL = "sandbox-docker.host"

// ---------------------------------------------------------------------------
// errors

/**
 * The lease file could not be written: the sandbox's lease runs out unless a
 * later renewal succeeds, and `sandbox gc` then removes the sandbox.
 *
 * @since 0.2.0
 * @category errors
 */
export class LeaseRenewFailed extends Schema.TaggedError<LeaseRenewFailed>()("LeaseRenewFailed", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `could not renew the sandbox lease at ${this.path}: ${this.reason}. Make its directory writable (or pass another leaseDir); a lease not renewed in time lets sandbox gc remove the sandbox`
  }
}

/**
 * The process named as a sandbox's owner is not running (or `/proc` cannot
 * say when it started).
 *
 * @since 0.2.0
 * @category errors
 */
export class OwnerNotFound extends Schema.TaggedError<OwnerNotFound>()("OwnerNotFound", {
  pid: Schema.Number,
  reason: Schema.String
}) {
  override get message(): string {
    return `process ${this.pid} cannot own a sandbox: ${this.reason}. Name a running process, or give the owner as an id of your own`
  }
}

/**
 * A sandbox judged for removal could not be removed; the next `reap` tries again.
 *
 * @since 0.2.0
 * @category errors
 */
export class SandboxReapFailed extends Schema.TaggedError<SandboxReapFailed>()(
  "SandboxReapFailed",
  { sandbox: Schema.String, id: Schema.String, reason: Schema.String }
) {
  override get message(): string {
    return `could not remove sandbox ${this.sandbox} (${this.id.slice(0, 12)}): ${this.reason}. Run sandbox gc again, or sandbox rm ${this.sandbox}`
  }
}

// ---------------------------------------------------------------------------
// owners

/**
 * A sandbox's owner as its label reads: a process of a host, or an id a
 * platform chose (which nobody can check).
 *
 * @since 0.2.0
 * @category models
 */
export type Owner =
  | {
      readonly _tag: "Process"
      readonly host: string
      readonly bootId: string
      readonly pid: number
      readonly startTicks: string
    }
  | { readonly _tag: "Named"; readonly id: string }

/**
 * Reads an owner label.
 *
 * @since 0.2.0
 * @category owners
 */
export const parseOwner = (label: string): Owner => {
  const match = /^process:([^:]+):([0-9a-f-]+):(\d+):(\d+)$/.exec(label)
  return match === null
    ? { _tag: "Named", id: label }
    : {
        _tag: "Process",
        host: match[1] ?? "",
        bootId: match[2] ?? "",
        pid: Number(match[3]),
        startTicks: match[4] ?? ""
      }
}

const BOOT_ID = "/proc/sys/kernel/random/boot_id"

/** This host's boot id. */
const bootId = (fs: FileSystem.FileSystem) =>
  Effect.map(fs.readFileString(BOOT_ID), (text) => text.trim())

/** A process's state letter and start time (clock ticks since boot), from `/proc/PID/stat`. */
const processStat = (fs: FileSystem.FileSystem, pid: number) =>
  Effect.map(fs.readFileString(`/proc/${pid}/stat`), (text) => {
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted from the last `)`.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    return { state: fields[0] ?? "", startTicks: fields[19] ?? "" }
  })

/**
 * The owner label of process `pid` of this host (default: this process).
 *
 * @since 0.2.0
 * @category owners
 */
export const processOwner = Effect.fn("SandboxLease.processOwner")(function* (
  pid: number = process.pid
) {
  const fs = yield* FileSystem.FileSystem
  const fail = (reason: string) => new OwnerNotFound({ pid, reason })
  if (!Number.isInteger(pid) || pid <= 0) return yield* fail("not a process id")
  const boot = yield* bootId(fs).pipe(Effect.mapError((error) => fail(error.message)))
  const stat = yield* processStat(fs, pid).pipe(
    Effect.mapError(() => fail("no such process on this host"))
  )
  if (stat.state === "Z" || !/^\d+$/.test(stat.startTicks)) {
    return yield* fail("the process has exited")
  }
  return `process:${hostname()}:${boot}:${pid}:${stat.startTicks}`
})

/**
 * Whether an owner is still there, as far as this host can tell.
 *
 * @since 0.2.0
 * @category models
 */
export type OwnerState =
  | { readonly _tag: "Alive" }
  | { readonly _tag: "Gone"; readonly reason: string }
  | { readonly _tag: "Unknown"; readonly reason: string }

/**
 * Checks an owner against this host's `/proc`: a process of this boot with
 * the same pid and start time is alive; of an earlier boot, or whose pid is
 * gone or reused, gone; of another host, or a platform's id, unknown.
 *
 * @since 0.2.0
 * @category owners
 */
export const ownerState = Effect.fn("SandboxLease.ownerState")(function* (owner: Owner) {
  const fs = yield* FileSystem.FileSystem
  if (owner._tag === "Named") {
    return { _tag: "Unknown", reason: `owner ${owner.id} is a platform's id` } as OwnerState
  }
  if (owner.host !== hostname()) {
    return { _tag: "Unknown", reason: `owner is a process of host ${owner.host}` } as OwnerState
  }
  const boot = yield* bootId(fs).pipe(Effect.option)
  if (Option.isNone(boot)) {
    return { _tag: "Unknown", reason: `cannot read ${BOOT_ID}` } as OwnerState
  }
  if (boot.value !== owner.bootId) {
    return { _tag: "Gone", reason: "its process ran before this host's last boot" } as OwnerState
  }
  const stat = yield* processStat(fs, owner.pid).pipe(Effect.option)
  if (Option.isNone(stat) || stat.value.state === "Z") {
    return { _tag: "Gone", reason: `process ${owner.pid} has exited` } as OwnerState
  }
  if (stat.value.startTicks !== owner.startTicks) {
    return {
      _tag: "Gone",
      reason: `process ${owner.pid} has exited (the pid now belongs to another process)`
    } as OwnerState
  }
  return { _tag: "Alive" } as OwnerState
})

// ---------------------------------------------------------------------------
// leases

/**
 * What a lease file holds.
 *
 * @since 0.2.0
 * @category models
 */
export class LeaseFile extends Schema.Class<LeaseFile>("LeaseFile")({
  owner: Schema.String,
  /** Epoch milliseconds (Effect's `Clock`). */
  expiresAt: Schema.Number,
  ttlMs: Schema.Number
}) {}

const encodeLease = Schema.encodeSync(Schema.parseJson(LeaseFile))
const decodeLease = Schema.decodeUnknown(Schema.parseJson(LeaseFile))

/**
 * The directory for lease files when none is given: `$XDG_RUNTIME_DIR/sandbox-docker/leases`,
 * else `/tmp/sandbox-docker-UID/leases`.
 *
 * @since 0.2.0
 * @category leases
 */
export const defaultLeaseDir = (): string => {
  const runtime = process.env.XDG_RUNTIME_DIR
  return runtime !== undefined && runtime.startsWith("/")
    ? `${runtime}/sandbox-docker/leases`
    : `/tmp/sandbox-docker-${process.getuid?.() ?? 0}/leases`
}

/**
 * Options of a lease.
 *
 * @since 0.2.0
 * @category models
 */
export interface LeaseOptions {
  /** The owner label (default: this process, {@link processOwner}). */
  readonly owner?: string | undefined
  /** How long a renewal holds. Default 60 s; renewed every third of it. */
  readonly ttl?: Duration.DurationInput | undefined
  /** Where the lease file goes (default {@link defaultLeaseDir}). */
  readonly dir?: string | undefined
}

/**
 * A sandbox's owner and lease: the labels to put on its container, and the
 * renewal.
 *
 * @since 0.2.0
 * @category models
 */
export interface Lease {
  readonly owner: string
  readonly path: string
  readonly ttl: Duration.Duration
  /** The labels that carry the owner, the lease file and the host. */
  readonly labels: Readonly<Record<string, string>>
  /** Extends the lease to now + ttl. */
  readonly renew: Effect.Effect<void, LeaseRenewFailed>
  /** The lease file as it is now. */
  readonly read: Effect.Effect<LeaseFile, LeaseRenewFailed>
}

/** A lease file's name: random, made before the container (whose id is not known yet). */
const leaseName = () => `${randomUUID()}.json`

/** The path of a lease file, as {@link leaseName} names it. */
const LEASE_NAME = /^\/.+\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json$/

/**
 * The labels that name a sandbox's owner (and the host it was created on),
 * for a sandbox without a lease: only its owner decides.
 *
 * @since 0.2.0
 * @category leases
 */
export const ownerLabels = (owner: string): Readonly<Record<string, string>> => ({
  [OWNER_LABEL]: owner,
  [HOST_LABEL]: hostname()
})

/**
 * Takes a lease: writes its file (expiring after `ttl`) and removes it when
 * the scope closes. Its `labels` go on the sandbox container.
 *
 * @since 0.2.0
 * @category leases
 */
export const acquire = (
  options: LeaseOptions = {}
): Effect.Effect<Lease, LeaseRenewFailed | OwnerNotFound, FileSystem.FileSystem | Scope.Scope> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    Effect.acquireRelease(make(options), (lease) =>
      fs.remove(lease.path, { force: true }).pipe(Effect.ignore)
    )
  )

/**
 * Writes a lease file (expiring after `ttl`) that outlives this process
 * (the CLI's, renewed with `sandbox renew`); {@link acquire} is the scoped one.
 *
 * @since 0.2.0
 * @category leases
 */
export const make = Effect.fn("SandboxLease.make")(function* (options: LeaseOptions = {}) {
  const fs = yield* FileSystem.FileSystem
  const owner = options.owner ?? (yield* processOwner())
  const ttl = Duration.decode(options.ttl ?? "60 seconds")
  const dir = options.dir ?? defaultLeaseDir()
  const path = `${dir}/${leaseName()}`
  const fail = (error: { readonly message: string }) =>
    new LeaseRenewFailed({ path, reason: error.message })
  const renew = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const text = encodeLease(
      new LeaseFile({
        owner,
        expiresAt: now + Duration.toMillis(ttl),
        ttlMs: Duration.toMillis(ttl)
      })
    )
    // Written aside and renamed: a reader never sees half a file.
    yield* fs.writeFileString(`${path}.tmp`, text)
    yield* fs.rename(`${path}.tmp`, path)
  }).pipe(Effect.mapError(fail), Effect.withSpan("SandboxLease.renew"))
  yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.mapError(fail))
  yield* renew
  const read = fs.readFileString(path).pipe(Effect.flatMap(decodeLease), Effect.mapError(fail))
  return {
    owner,
    path,
    ttl,
    labels: { ...ownerLabels(owner), [LEASE_LABEL]: path },
    renew,
    read
  } satisfies Lease
})

/**
 * Renews the lease file at `path` (a sandbox's `LEASE_LABEL`) for its own
 * ttl, or for `ttl` when given. Fails when the file is not a lease.
 *
 * @since 0.2.0
 * @category leases
 */
export const renewFile = Effect.fn("SandboxLease.renewFile")(function* (
  path: string,
  ttl?: Duration.DurationInput
) {
  const fs = yield* FileSystem.FileSystem
  const fail = (error: { readonly message: string }) =>
    new LeaseRenewFailed({ path, reason: error.message })
  if (!LEASE_NAME.test(path)) return yield* fail({ message: "not the path of a lease file" })
  const current = yield* fs
    .readFileString(path)
    .pipe(Effect.flatMap(decodeLease), Effect.mapError(fail))
  const ttlMs = ttl === undefined ? current.ttlMs : Duration.toMillis(Duration.decode(ttl))
  const now = yield* Clock.currentTimeMillis
  const next = new LeaseFile({ owner: current.owner, expiresAt: now + ttlMs, ttlMs })
  yield* fs
    .writeFileString(`${path}.tmp`, encodeLease(next))
    .pipe(Effect.zipRight(fs.rename(`${path}.tmp`, path)), Effect.mapError(fail))
  return next
})

/**
 * Renews the lease every third of its ttl for as long as the scope lives.
 * A renewal that fails is logged (Warning) and retried at the next turn:
 * only a lease not renewed for its whole ttl runs out.
 *
 * @since 0.2.0
 * @category leases
 */
export const keepRenewed = (lease: Lease): Effect.Effect<void, never, Scope.Scope> =>
  lease.renew.pipe(
    Effect.tapError((error) =>
      Effect.logWarning("sandbox lease not renewed").pipe(
        Effect.annotateLogs({ path: error.path, reason: error.reason })
      )
    ),
    Effect.ignore,
    Effect.repeat(
      Schedule.spaced(Duration.divide(lease.ttl, 3).pipe(Option.getOrElse(() => lease.ttl)))
    ),
    Effect.delay(Duration.divide(lease.ttl, 3).pipe(Option.getOrElse(() => lease.ttl))),
    // Interruptible even when the sandbox is made in an uninterruptible
    // region (an acquireRelease's acquire): its scope's close must end it.
    Effect.interruptible,
    Effect.forkScoped,
    Effect.asVoid
  )

// ---------------------------------------------------------------------------
// judging

/**
 * What {@link reap} does with a sandbox, and why.
 *
 * @since 0.2.0
 * @category models
 */
export type Verdict =
  | { readonly _tag: "Keep"; readonly reason: string }
  | { readonly _tag: "Reap"; readonly reason: string }

/**
 * What is known of one sandbox's lease: its file, no lease at all, or a file
 * that is missing or unreadable.
 *
 * @since 0.2.0
 * @category models
 */
export type LeaseState =
  | { readonly _tag: "NoLease" }
  | { readonly _tag: "Found"; readonly lease: LeaseFile }
  | { readonly _tag: "Missing"; readonly path: string }
  | { readonly _tag: "Unreadable"; readonly path: string; readonly reason: string }

/**
 * The verdict on a sandbox from its owner's state and its lease, at the
 * `Clock`'s now: a lease run out, or an owner gone, is reaped; a sandbox
 * whose owner is alive and whose lease (if any) holds is kept; so is one
 * with no owner label (made by hand, or by an older version), and one whose
 * lease cannot be read.
 *
 * @since 0.2.0
 * @category judging
 */
export const judge = (
  owner: Option.Option<OwnerState>,
  lease: LeaseState
): Effect.Effect<Verdict> =>
  Effect.map(Clock.currentTimeMillis, (now): Verdict => {
    if (Option.isNone(owner) && lease._tag === "NoLease") {
      return { _tag: "Keep", reason: "no owner label: remove it with sandbox rm" }
    }
    if (Option.isSome(owner) && owner.value._tag === "Gone") {
      return { _tag: "Reap", reason: `owner gone: ${owner.value.reason}` }
    }
    switch (lease._tag) {
      case "Found": {
        const left = lease.lease.expiresAt - now
        return left <= 0
          ? { _tag: "Reap", reason: `lease ran out ${formatMs(-left)} ago` }
          : { _tag: "Keep", reason: `lease valid for ${formatMs(left)}` }
      }
      case "Missing":
        return { _tag: "Reap", reason: `lease file ${lease.path} is gone` }
      case "Unreadable":
        return {
          _tag: "Keep",
          reason: `lease file ${lease.path} cannot be read (${lease.reason})`
        }
      case "NoLease":
        return Option.isSome(owner) && owner.value._tag === "Alive"
          ? { _tag: "Keep", reason: "owner alive" }
          : {
              _tag: "Keep",
              reason: `no lease, and the owner cannot be checked here (${Option.isSome(owner) && owner.value._tag === "Unknown" ? owner.value.reason : "no owner"})`
            }
    }
  })

const formatMs = (ms: number) =>
  ms < 1000
    ? `${Math.round(ms)}ms`
    : ms < 120_000
      ? `${Math.round(ms / 1000)}s`
      : `${Math.round(ms / 60_000)}m`

/** Reads the lease file a label names. */
const leaseState = (fs: FileSystem.FileSystem, path: string | undefined) =>
  Effect.gen(function* () {
    if (path === undefined) return { _tag: "NoLease" } as LeaseState
    const text = yield* fs.readFileString(path).pipe(Effect.either)
    if (text._tag === "Left") {
      return text.left._tag === "SystemError" && text.left.reason === "NotFound"
        ? ({ _tag: "Missing", path } as LeaseState)
        : ({ _tag: "Unreadable", path, reason: text.left.message } as LeaseState)
    }
    return yield* decodeLease(text.right).pipe(
      Effect.map((lease): LeaseState => ({ _tag: "Found", lease })),
      Effect.orElseSucceed((): LeaseState => ({
        _tag: "Unreadable",
        path,
        reason: "not a lease file"
      }))
    )
  })

// ---------------------------------------------------------------------------
// reaping

const Labels = Schema.NullishOr(Schema.Record({ key: Schema.String, value: Schema.String }))

const ContainerList = Schema.Array(
  Schema.Struct({
    Id: Schema.String,
    Names: Schema.NullishOr(Schema.Array(Schema.String)),
    State: Schema.optional(Schema.String),
    Labels
  })
)

/**
 * One sandbox as {@link reap} found and judged it.
 *
 * @since 0.2.0
 * @category models
 */
export interface Judged {
  readonly id: string
  readonly name: string
  readonly running: boolean
  readonly owner: string | undefined
  readonly labels: Readonly<Record<string, string>>
  readonly verdict: Verdict
  /** For a sandbox reaped: whether it was removed, or why not. */
  readonly removed: boolean
  readonly error?: SandboxReapFailed | undefined
}

/**
 * Options of {@link reap}.
 *
 * @since 0.2.0
 * @category models
 */
export interface ReapOptions {
  /** The host engine's unix socket. */
  readonly engineSocket: string
  /** Judge only; remove nothing. */
  readonly dryRun?: boolean | undefined
  /** Grace between SIGTERM and SIGKILL for dockerd inside. Default 5 s. */
  readonly stopGrace?: Duration.DurationInput | undefined
}

/**
 * Run as `sh -c STOP_SCRIPT sh GRACE_TENTHS`: marks the stop (so that the
 * CLI's supervising launcher does not restart dockerd), then SIGTERM to
 * dockerd by its pidfile, up to GRACE tenths of a second, SIGKILL. (A
 * `sleep` without fractions waits whole seconds, a tenth each.)
 */
const STOP_SCRIPT = `mkdir -p /run/sandbox-docker && : >/run/sandbox-docker/stop
pid=$(cat /var/run/docker.pid 2>/dev/null)
[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || exit 0
i=0
while [ -d "/proc/$pid" ] && [ "$i" -lt "$1" ]; do
  sleep 0.1 2>/dev/null || sleep 1
  i=$((i + 1))
done
kill -KILL "$pid" 2>/dev/null
exit 0`

/** Inner containers, then dockerd (TERM, grace, KILL), inside a running sandbox. */
const stopInside = (socket: string, id: string, grace: Duration.Duration) =>
  Effect.scoped(
    Effect.gen(function* () {
      const manager = yield* ContainerProcessManager.make({ socket, containerId: id })
      yield* SandboxDocker.removeInnerContainers(manager)
      const stop = yield* manager.exec(
        ["sh", "-c", STOP_SCRIPT, "sh", String(Math.ceil(Duration.toMillis(grace) / 100))],
        { killGrace: "1 second" }
      )
      yield* stop.awaitExit
    })
  ).pipe(Effect.timeout(Duration.sum(grace, "30 seconds")), Effect.ignore)

/**
 * Judges every sandbox on the engine (containers labelled
 * `sandbox-docker=sandbox`; no other container is looked at) and removes
 * those whose lease ran out or whose owner is gone: the containers inside,
 * dockerd inside, the container and its volume, then the lease file. A
 * sandbox that cannot be removed is reported in its {@link Judged} entry;
 * the others are still reaped.
 *
 * @since 0.2.0
 * @category reaping
 */
export const reap = Effect.fn("Sandbox.reap")(
  function* (options: ReapOptions) {
    const fs = yield* FileSystem.FileSystem
    const engine = yield* DockerEngine.make(options.engineSocket)
    const filters = encodeURIComponent(JSON.stringify({ label: [`${SANDBOX_LABEL}=sandbox`] }))
    const listed = yield* engine.request("GET", `/containers/json?all=true&filters=${filters}`, {
      schema: ContainerList
    })
    const grace = Duration.decode(options.stopGrace ?? "5 seconds")
    const here = hostname()
    const results: Array<Judged> = []
    for (const container of listed) {
      const labels = container.Labels ?? {}
      // The engine filtered by label; checked again, as nothing else may be touched.
      if (labels[SANDBOX_LABEL] !== "sandbox") continue
      const name = (container.Names?.[0] ?? container.Id.slice(0, 12)).replace(/^\//, "")
      const ownerLabel = labels[OWNER_LABEL]
      const createdOn = labels[HOST_LABEL]
      const running = container.State === "running"
      const lease = yield* leaseState(fs, labels[LEASE_LABEL])
      const verdict: Verdict =
        createdOn !== undefined && createdOn !== here
          ? {
              _tag: "Keep",
              reason: `created on host ${createdOn}: its owner and lease can only be checked there`
            }
          : yield* judge(
              ownerLabel === undefined
                ? Option.none()
                : Option.some(yield* ownerState(parseOwner(ownerLabel))),
              lease
            )
      const judged = { id: container.Id, name, running, owner: ownerLabel, labels, verdict }
      if (verdict._tag === "Keep" || options.dryRun === true) {
        results.push({ ...judged, removed: false })
        continue
      }
      yield* Effect.logInfo("reaping a sandbox").pipe(
        Effect.annotateLogs({ sandbox: name, reason: verdict.reason })
      )
      if (running) yield* stopInside(options.engineSocket, container.Id, grace)
      const removed = yield* engine
        .request("DELETE", `/containers/${encodeURIComponent(container.Id)}?force=true&v=true`)
        .pipe(
          Effect.catchIf(
            (error) => error._tag === "EngineBadAnswer" && error.status === 404,
            () => Effect.void
          ),
          Effect.timeout("60 seconds"),
          Effect.either
        )
      if (removed._tag === "Left") {
        const error = new SandboxReapFailed({
          sandbox: name,
          id: container.Id,
          reason: removed.left.message
        })
        results.push({ ...judged, removed: false, error })
        continue
      }
      // Only a file that is a lease, of a lease's name: a label is not trusted with a path to delete.
      const leasePath = labels[LEASE_LABEL]
      if (lease._tag === "Found" && leasePath !== undefined && LEASE_NAME.test(leasePath)) {
        yield* fs.remove(leasePath, { force: true }).pipe(Effect.ignore)
      }
      results.push({ ...judged, removed: true })
    }
    return results as ReadonlyArray<Judged>
  },
  Effect.scoped,
  Effect.provide(NodeFileSystem.layer)
)
