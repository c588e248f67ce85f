/**
 * The lease clock under `TestClock`: a lease's expiry, the verdicts, and the
 * renewal fiber, over an in-memory file system (what a real clock cannot
 * show deterministically: the instant a lease runs out).
 */
import { SystemError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as SandboxLease from "../src/SandboxLease.js"

const OWNER = "platform-job-42"
const DIR = "/leases"

/** An in-memory file system; `failWrites` makes every write fail. */
const memoryFs = () => {
  const files = new Map<string, string>()
  let failWrites = false
  const notFound = (path: string) =>
    new SystemError({
      reason: "NotFound",
      module: "FileSystem",
      method: "readFileString",
      pathOrDescriptor: path
    })
  const layer = FileSystem.layerNoop({
    makeDirectory: () => Effect.void,
    writeFileString: (path, data) =>
      failWrites
        ? Effect.fail(
            new SystemError({
              reason: "PermissionDenied",
              module: "FileSystem",
              method: "writeFileString",
              pathOrDescriptor: path
            })
          )
        : Effect.sync(() => void files.set(path, data)),
    rename: (from, to) =>
      Effect.suspend(() => {
        const data = files.get(from)
        if (data === undefined) return Effect.fail(notFound(from))
        files.delete(from)
        files.set(to, data)
        return Effect.void
      }),
    readFileString: (path) =>
      Effect.suspend(() => {
        const data = files.get(path)
        return data === undefined ? Effect.fail(notFound(path)) : Effect.succeed(data)
      }),
    remove: (path) => Effect.sync(() => void files.delete(path))
  })
  return {
    files,
    layer,
    breakWrites: () => {
      failWrites = true
    }
  }
}

const judgeNow = (lease: SandboxLease.Lease, owner = Option.none<SandboxLease.OwnerState>()) =>
  Effect.flatMap(lease.read, (file) => SandboxLease.judge(owner, { _tag: "Found", lease: file }))

describe("the lease clock (TestClock)", () => {
  it.effect("a lease of 30 s taken at 0 holds at 29 s and has run out at 31 s", () => {
    const fs = memoryFs()
    return Effect.gen(function* () {
      const scope = yield* Scope.make()
      const lease = yield* SandboxLease.acquire({ owner: OWNER, ttl: "30 seconds", dir: DIR }).pipe(
        Scope.extend(scope)
      )
      expect((yield* lease.read).expiresAt).toBe(30_000)
      yield* TestClock.adjust("29 seconds")
      expect(yield* judgeNow(lease)).toEqual({ _tag: "Keep", reason: "lease valid for 1s" })
      yield* TestClock.adjust("2 seconds")
      expect(yield* judgeNow(lease)).toEqual({ _tag: "Reap", reason: "lease ran out 1s ago" })
      // Closing the scope removes the lease file.
      yield* Scope.close(scope, Exit.void)
      expect([...fs.files.keys()]).toEqual([])
    }).pipe(Effect.provide(fs.layer))
  })

  it.scoped("the renewal fiber keeps a 30 s lease valid for as long as its scope lives", () => {
    const fs = memoryFs()
    return Effect.gen(function* () {
      const lease = yield* SandboxLease.acquire({ owner: OWNER, ttl: "30 seconds", dir: DIR })
      yield* SandboxLease.keepRenewed(lease)
      for (let minute = 1; minute <= 5; minute++) {
        yield* TestClock.adjust("1 minute")
        // Renewed every 10 s: the last renewal was at most 10 s ago.
        const expiresAt = (yield* lease.read).expiresAt
        expect(expiresAt).toBeGreaterThanOrEqual(minute * 60_000 + 20_000)
        expect((yield* judgeNow(lease))._tag).toBe("Keep")
      }
    }).pipe(Effect.provide(fs.layer))
  })

  it.scoped(
    "renewals that fail (logged, retried) let the lease run out 30 s after the last success",
    () => {
      const fs = memoryFs()
      return Effect.gen(function* () {
        const lease = yield* SandboxLease.acquire({ owner: OWNER, ttl: "30 seconds", dir: DIR })
        yield* SandboxLease.keepRenewed(lease)
        yield* TestClock.adjust("10 seconds")
        expect((yield* lease.read).expiresAt).toBe(40_000)
        fs.breakWrites()
        const error = yield* Effect.flip(lease.renew)
        expect(error).toMatchObject({ _tag: "LeaseRenewFailed", path: lease.path })
        expect(error.reason).toContain("PermissionDenied")
        yield* TestClock.adjust("29 seconds")
        expect((yield* judgeNow(lease))._tag).toBe("Keep")
        yield* TestClock.adjust("2 seconds")
        expect(yield* judgeNow(lease)).toEqual({ _tag: "Reap", reason: "lease ran out 1s ago" })
      }).pipe(Effect.provide(fs.layer))
    }
  )

  it.effect("renewFile extends a lease from the Clock's now by its own ttl", () => {
    const fs = memoryFs()
    return Effect.gen(function* () {
      const lease = yield* SandboxLease.make({ owner: OWNER, ttl: "1 minute", dir: DIR })
      yield* TestClock.adjust("50 seconds")
      const renewed = yield* SandboxLease.renewFile(lease.path)
      expect(renewed.expiresAt).toBe(110_000)
      const longer = yield* SandboxLease.renewFile(lease.path, "10 minutes")
      expect(longer).toMatchObject({ expiresAt: 650_000, ttlMs: 600_000, owner: OWNER })
      const refused = yield* Effect.flip(SandboxLease.renewFile("/etc/passwd"))
      expect(refused).toMatchObject({ _tag: "LeaseRenewFailed", path: "/etc/passwd" })
    }).pipe(Effect.provide(fs.layer))
  })
})

describe("verdicts", () => {
  const found = (expiresAt: number): SandboxLease.LeaseState => ({
    _tag: "Found",
    lease: new SandboxLease.LeaseFile({ owner: OWNER, expiresAt, ttlMs: 30_000 })
  })
  const alive = Option.some<SandboxLease.OwnerState>({ _tag: "Alive" })
  const gone = Option.some<SandboxLease.OwnerState>({
    _tag: "Gone",
    reason: "process 7 has exited"
  })

  it.effect("an owner gone is reaped, even with a valid lease", () =>
    Effect.gen(function* () {
      expect(yield* SandboxLease.judge(gone, found(60_000))).toEqual({
        _tag: "Reap",
        reason: "owner gone: process 7 has exited"
      })
    })
  )

  it.effect("an owner alive with a valid lease, or alive without a lease, is kept", () =>
    Effect.gen(function* () {
      expect((yield* SandboxLease.judge(alive, found(60_000)))._tag).toBe("Keep")
      expect(yield* SandboxLease.judge(alive, { _tag: "NoLease" })).toEqual({
        _tag: "Keep",
        reason: "owner alive"
      })
    })
  )

  it.effect("a lease that ran out is reaped though its owner lives (a hung owner)", () =>
    Effect.gen(function* () {
      yield* TestClock.adjust("61 seconds")
      expect(yield* SandboxLease.judge(alive, found(60_000))).toEqual({
        _tag: "Reap",
        reason: "lease ran out 1s ago"
      })
    })
  )

  it.effect("no owner label and no lease, or a lease that cannot be read, is kept", () =>
    Effect.gen(function* () {
      expect((yield* SandboxLease.judge(Option.none(), { _tag: "NoLease" }))._tag).toBe("Keep")
      const unreadable = yield* SandboxLease.judge(Option.none(), {
        _tag: "Unreadable",
        path: "/l.json",
        reason: "EACCES"
      })
      expect(unreadable).toEqual({
        _tag: "Keep",
        reason: "lease file /l.json cannot be read (EACCES)"
      })
    })
  )

  it.effect("a lease file that is gone is reaped", () =>
    Effect.gen(function* () {
      expect(yield* SandboxLease.judge(alive, { _tag: "Missing", path: "/l.json" })).toEqual({
        _tag: "Reap",
        reason: "lease file /l.json is gone"
      })
    })
  )

  it("owner labels: a process of a host, or a platform's id", () => {
    expect(SandboxLease.parseOwner("process:vm:64aa18b3-daf3:1234:98765")).toEqual({
      _tag: "Process",
      host: "vm",
      bootId: "64aa18b3-daf3",
      pid: 1234,
      startTicks: "98765"
    })
    expect(SandboxLease.parseOwner("ci-job-7")).toEqual({ _tag: "Named", id: "ci-job-7" })
  })
})
