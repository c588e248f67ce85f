/**
 * The fault matrix (docs/failure-modes.md) against the real daemon (Debian's
 * docker.io): each failure made for real, each daemon isolated in its own
 * temp dir and network namespace, and after each: no process, no mount left.
 * Every mount a test makes is undone by its scope (acquireRelease).
 *
 * Rows already shown elsewhere are not repeated here: test/dockerd.real.test.ts
 * (unknown flag, live pidfile, missing binary, directory at the socket path,
 * unwritable data-root, SIGSTOP / SIGKILL after ready, restart, interrupted
 * start) and test/cli.test.ts.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { promisify } from "node:util"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type { DaemonEvent } from "../src/DaemonEvent.js"
import * as Containerd from "../src/Containerd.js"
import * as Dockerd from "../src/Dockerd.js"
import { mountEntriesUnder, readPidfile } from "../src/internal/processTree.js"
import * as Probe from "../src/Probe.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as Supervisor from "../src/Supervisor.js"
import { hasDockerd, isolatedConfig } from "./support/isolated.js"
import { failedStartExecs, withDir } from "./support/withDir.js"

const run = promisify(execFile)
const real = hasDockerd()
const root = process.getuid?.() === 0

const fastLiveness = new Supervisor.LivenessPolicy({
  interval: Duration.millis(100),
  timeout: Duration.millis(300),
  failureThreshold: 2
})

/** Liveness that cannot reach its threshold before the daemon's exit. */
const onlyTheExit = new Supervisor.LivenessPolicy({
  interval: Duration.hours(1),
  timeout: Duration.seconds(2),
  failureThreshold: 2
})

/**
 * A tmpfs mounted at `path` for the scope, with `options` (`size=1m`, `ro`).
 * Its release undoes whatever is stacked on `path`, the tmpfs last.
 */
const tmpfs = (path: string, options: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      mkdirSync(path, { recursive: true })
      await run("mount", ["-t", "tmpfs", "-o", options, "tmpfs", path])
      const entries = await Effect.runPromise(mountEntriesUnder(path))
      return entries.find((entry) => entry.point === path)?.id ?? -1
    }),
    () =>
      Effect.promise(async () => {
        for (let i = 0; i < 5; i++) {
          const entries = await Effect.runPromise(mountEntriesUnder(path))
          if (entries.length === 0) return
          for (const entry of entries)
            await run("umount", ["--lazy", entry.point]).catch(() => undefined)
        }
      })
  )

/** Whether the mount with this id is still mounted. */
const isMounted = (id: number) =>
  Effect.map(mountEntriesUnder("/"), (entries) => entries.some((entry) => entry.id === id))

/** A live process for the scope (a `sleep`), killed on release. */
const liveProcess = Effect.acquireRelease(
  Effect.sync(() => spawn("sleep", ["600"], { stdio: "ignore" })),
  (child: ChildProcess) => Effect.sync(() => child.kill("SIGKILL"))
)

/** Polls `check` every 50 ms until it returns a value, for at most `limit`. */
const eventually = <A>(
  check: Effect.Effect<A | undefined>,
  limit: Duration.DurationInput = "60 seconds"
) =>
  Effect.gen(function* () {
    for (;;) {
      const value = yield* check
      if (value !== undefined) return value
      yield* Effect.sleep("50 millis")
    }
  }).pipe(
    Effect.timeoutFail({ duration: limit, onTimeout: () => new Error("timed out waiting") }),
    Effect.orDie
  )

const containerdPid = (dir: string) => readPidfile(`${dir}/exec/containerd/containerd.pid`)

/** `GET /info` with curl, as a user would check the daemon; `true` when it answers 200 in 5 s. */
const infoAnswers = (socket: string) =>
  Effect.promise(() =>
    run("curl", [
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "--max-time",
      "5",
      "--unix-socket",
      socket,
      "http://d/info"
    ]).then(
      (out) => out.stdout.trim() === "200",
      () => false
    )
  )

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return false
  }
}

describe.skipIf(!real || !root)("fault matrix on a real daemon", () => {
  // -------------------------------------------------------------------------
  // Filesystems
  // -------------------------------------------------------------------------

  it.live(
    "full disk (data-root on a full 1 MiB tmpfs): DaemonCrashed, disk-full; the tmpfs itself is left mounted",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const dataRoot = `${dir}/data`
          const tmpfsId = yield* tmpfs(dataRoot, "size=1m")
          yield* Effect.promise(() =>
            run("dd", ["if=/dev/zero", `of=${dataRoot}/fill`, "bs=4k"]).catch(() => undefined)
          )
          const error = yield* Effect.flip(Effect.scoped(Dockerd.start(isolatedConfig(dir))))
          expect(error).toMatchObject({
            _tag: "DaemonCrashed",
            exitCode: 1,
            diagnosis: { cause: "disk-full" }
          })
          expect(error.message).toContain("the disk is full")
          // The stop undid the daemon's own bind mount of its data-root, not the user's disk.
          expect(yield* isMounted(tmpfsId)).toBe(true)
          expect((yield* mountEntriesUnder(dataRoot)).map((entry) => entry.id)).toEqual([tmpfsId])
        })
      )
  )

  it.live(
    "read-only data-root (ro tmpfs): DirectoryNotWritable (EROFS) before anything is spawned",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          yield* tmpfs(`${dir}/data`, "ro")
          const events: Array<DaemonEvent> = []
          const error = yield* Effect.flip(
            Effect.scoped(
              Dockerd.start(isolatedConfig(dir), ReadinessPolicy.fast, {
                onEvent: (event) => Effect.sync(() => events.push(event))
              })
            )
          )
          expect(error).toMatchObject({
            _tag: "DirectoryNotWritable",
            field: "data-root",
            path: `${dir}/data`,
            reason: "EROFS"
          })
          // Not even the preflight passed.
          expect(events).toEqual([])
          expect((yield* failedStartExecs(isolatedConfig(dir))).execs).toEqual([])
        })
      )
  )

  it.live(
    "read-only socket directory (ro tmpfs): DirectoryNotWritable (EROFS) before anything is spawned",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          yield* tmpfs(`${dir}/run`, "ro")
          const { error, execs } = yield* failedStartExecs(
            isolatedConfig(dir, { socket: `${dir}/run/docker.sock` })
          )
          expect(error).toMatchObject({
            _tag: "DirectoryNotWritable",
            field: "socket directory",
            path: `${dir}/run`,
            reason: "EROFS"
          })
          expect(execs).toEqual([])
        })
      )
  )

  it.live(
    "a stale socket file (a regular file, or a socket nobody listens on): the daemon starts normally",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const config = isolatedConfig(dir)
          const socket = config.socket as string
          writeFileSync(socket, "stale")
          const first = yield* Effect.scoped(Dockerd.start(config))
          expect(first.serverVersion).toMatch(/^\d+\./)
          // A socket whose listener was SIGKILLed: the file stays, nothing accepts.
          yield* Effect.promise(() =>
            run("node", [
              "-e",
              `require("net").createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, "SIGKILL"))`
            ]).catch(() => undefined)
          )
          expect(existsSync(socket)).toBe(true)
          const second = yield* Effect.scoped(Dockerd.start(config))
          expect(second.serverVersion).toBe(first.serverVersion)
        })
      )
  )

  it.live("a socket something listens on: SocketInUse, nothing spawned", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const socket = `${dir}/docker.sock`
        const server = createServer()
        yield* Effect.acquireRelease(
          Effect.async<void>((resume) => void server.listen(socket, () => resume(Effect.void))),
          () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
        )
        const { error, execs } = yield* failedStartExecs(isolatedConfig(dir))
        expect(error).toMatchObject({ _tag: "SocketInUse", socket })
        expect(error.message).toContain("choose another --socket")
        expect(execs).toEqual([])
      })
    )
  )

  // -------------------------------------------------------------------------
  // Configuration dockerd refuses
  // -------------------------------------------------------------------------

  it.live("a bad --log-level: DaemonCrashed, bad-config", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(
          Effect.scoped(Dockerd.start(isolatedConfig(dir, { extraArgs: ["--log-level=nope"] })))
        )
        expect(error).toMatchObject({
          _tag: "DaemonCrashed",
          exitCode: 1,
          diagnosis: { cause: "bad-config" }
        })
        expect(error.message).toContain("unable to parse logging level: nope")
      })
    )
  )

  it.live("a broken daemon.json (--config-file): DaemonCrashed, bad-config, naming the file", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        writeFileSync(`${dir}/daemon.json`, '{ "debug": tru')
        const error = yield* Effect.flip(
          Effect.scoped(
            Dockerd.start(isolatedConfig(dir, { extraArgs: [`--config-file=${dir}/daemon.json`] }))
          )
        )
        expect(error).toMatchObject({
          _tag: "DaemonCrashed",
          exitCode: 1,
          diagnosis: { cause: "bad-config" }
        })
        if (error._tag === "DaemonCrashed") {
          expect(error.diagnosis?.line).toContain(
            `unable to configure the Docker daemon with file ${dir}/daemon.json`
          )
        }
      })
    )
  )

  it.live(
    "a storage driver the filesystem cannot hold (btrfs on a tmpfs): DaemonCrashed, graph-driver",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          yield* tmpfs(`${dir}/data`, "size=64m")
          const error = yield* Effect.flip(
            Effect.scoped(
              Dockerd.start(isolatedConfig(dir, { extraArgs: ["--storage-driver=btrfs"] }))
            )
          )
          expect(error).toMatchObject({
            _tag: "DaemonCrashed",
            exitCode: 1,
            diagnosis: { cause: "graph-driver" }
          })
          expect(error.message).toContain("error initializing graphdriver")
        })
      )
  )

  it.live("iptables not installed, with --iptables=true: DaemonCrashed, iptables", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        // The real dockerd, with a PATH that has containerd and runc but no iptables.
        const bin = `${dir}/bin`
        mkdirSync(bin)
        for (const tool of [
          "containerd",
          "containerd-shim-runc-v2",
          "runc",
          "docker-init",
          "docker-proxy"
        ]) {
          const path = yield* Effect.promise(() =>
            run("sh", ["-c", `command -v ${tool}`]).then(
              (out) => out.stdout.trim(),
              () => ""
            )
          )
          if (path !== "") symlinkSync(path, `${bin}/${tool}`)
        }
        const dockerd = execFileSync("sh", ["-c", "command -v dockerd"], {
          encoding: "utf8"
        }).trim()
        writeFileSync(`${bin}/dockerd`, `#!/bin/sh\nPATH=${bin} exec ${dockerd} "$@"\n`)
        chmodSync(`${bin}/dockerd`, 0o755)
        const error = yield* Effect.flip(
          Effect.scoped(
            Dockerd.start(
              isolatedConfig(dir, { binary: `${bin}/dockerd`, extraArgs: ["--iptables=true"] })
            )
          )
        )
        expect(error).toMatchObject({
          _tag: "DaemonCrashed",
          exitCode: 1,
          diagnosis: { cause: "iptables" }
        })
        expect(error.message).toContain("Iptables not found")
      })
    )
  )

  it.live(
    "a named network namespace that does not exist: InvalidConfig on network, nothing spawned",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const { error, execs } = yield* failedStartExecs(
            isolatedConfig(dir, { network: { netns: "sdt-no-such-netns" } })
          )
          expect(error).toMatchObject({ _tag: "InvalidConfig", field: "network" })
          expect(error.message).toContain("ip netns add sdt-no-such-netns")
          expect(execs).toEqual([])
        })
      )
  )

  // -------------------------------------------------------------------------
  // Processes: the daemon, its containerd, the stop
  // -------------------------------------------------------------------------

  it.live("SIGKILL before ready (the OOM killer at start): DaemonCrashed with the signal", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(
          Effect.scoped(
            Dockerd.start(isolatedConfig(dir), ReadinessPolicy.fast, {
              onEvent: (event) =>
                event._tag === "Spawned"
                  ? Effect.sync(() => process.kill(event.pid, "SIGKILL"))
                  : Effect.void
            })
          )
        )
        expect(error).toMatchObject({ _tag: "DaemonCrashed", signal: "SIGKILL" })
      })
    )
  )

  it.live(
    "SIGSTOP before ready (a daemon hung at start): DaemonNotReady at the deadline, then stopped",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const error = yield* Effect.flip(
            Effect.scoped(
              Dockerd.start(
                isolatedConfig(dir, { stopGrace: 2_000 }),
                ReadinessPolicy.fast.withDeadline("3 seconds"),
                {
                  onEvent: (event) =>
                    event._tag === "Spawned"
                      ? Effect.sync(() => process.kill(event.pid, "SIGSTOP"))
                      : Effect.void
                }
              )
            )
          )
          expect(error).toMatchObject({ _tag: "DaemonNotReady", deadlineMs: 3_000 })
          if (error._tag === "DaemonNotReady") expect(error.lastFailures.length).toBeGreaterThan(0)
        })
      )
  )

  it.live(
    "containerd SIGKILLed alone after ready: dockerd starts a new one, /info keeps answering, supervision goes on; the stop takes the new one too",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const daemon = yield* Dockerd.start(isolatedConfig(dir, { stopGrace: 5_000 }))
          const supervision = yield* Effect.fork(Supervisor.supervise(daemon))
          const old = yield* eventually(containerdPid(dir))
          process.kill(old, "SIGKILL")
          const fresh = yield* eventually(
            Effect.map(containerdPid(dir), (pid) =>
              pid !== undefined && pid !== old && isAlive(pid) ? pid : undefined
            )
          )
          expect(fresh).not.toBe(old)
          expect(yield* infoAnswers(daemon.socket)).toBe(true)
          // The liveness probe's containerd client reaches the new containerd
          // once it serves (until then it falls back to `/info`, which
          // dockerd answers while its containerd restarts).
          const answered = yield* eventually(
            Effect.map(
              Effect.either(Probe.run(daemon.liveness, { timeoutFor: () => Duration.seconds(2) })),
              (checked) =>
                Either.isRight(checked) &&
                checked.right.at(-1)?.value instanceof Containerd.ContainerdVersion
                  ? true
                  : undefined
            )
          )
          expect(answered).toBe(true)
          // Three more liveness rounds.
          yield* Effect.sleep("3 seconds")
          expect(Option.isNone(yield* Fiber.poll(supervision))).toBe(true)
          yield* Fiber.interrupt(supervision)
        })
      )
  )

  it.live(
    "containerd SIGSTOPped alone after ready: /_ping OK but containerd (and /info) hangs: DaemonUnhealthy; the stop (dockerd waits for containerd) is cut by the 2 s grace: SIGKILL",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const events: Array<DaemonEvent> = []
          const error = yield* Effect.scoped(
            Effect.gen(function* () {
              const daemon = yield* Dockerd.start(
                isolatedConfig(dir, { stopGrace: 2_000 }),
                ReadinessPolicy.fast,
                {
                  onEvent: (event) => Effect.sync(() => events.push(event))
                }
              )
              const containerd = yield* eventually(containerdPid(dir))
              process.kill(containerd, "SIGSTOP")
              return yield* Effect.flip(Supervisor.supervise(daemon, fastLiveness))
            })
          )
          expect(error).toMatchObject({
            _tag: "DaemonUnhealthy",
            consecutiveFailures: 2,
            lastFailure: { _tag: "ProbeTimedOut", probe: "containerd" }
          })
          // dockerd, told to stop, waits 10 s for its containerd: the grace
          // ran out first and SIGKILL ended it.
          const stopped = events.at(-1)
          expect(stopped).toMatchObject({
            _tag: "Stopped",
            status: { _tag: "Signaled", signal: "SIGKILL" }
          })
          if (stopped?._tag === "Stopped") expect(stopped.elapsedMs).toBeGreaterThanOrEqual(2_000)
        })
      )
  )

  it.live("SIGKILL during the daemon's shutdown: the stop finishes and cleans up", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const config = isolatedConfig(dir)
        const events: Array<DaemonEvent> = []
        let containerd: number | undefined
        yield* Effect.scoped(
          Effect.gen(function* () {
            const daemon = yield* Dockerd.start(config, ReadinessPolicy.fast, {
              onEvent: (event) =>
                Effect.sync(() => {
                  events.push(event)
                  if (event._tag !== "Stopping") return
                  // Freeze containerd so that the shutdown cannot finish on its
                  // own (dockerd waits for containerd), then kill dockerd once it
                  // is inside that shutdown. Without the freeze a quick shutdown
                  // could end before the SIGKILL lands.
                  if (containerd !== undefined) process.kill(containerd, "SIGSTOP")
                  const timer = setInterval(() => {
                    void Effect.runPromise(daemon.process.logTail).then((tail) => {
                      if (tail.some((line) => line.includes("Processing signal 'terminated'"))) {
                        clearInterval(timer)
                        process.kill(event.pid, "SIGKILL")
                      }
                    })
                  }, 5)
                })
            })
            containerd = yield* eventually(containerdPid(dir))
            return daemon
          })
        )
        expect(events.at(-1)).toMatchObject({
          _tag: "Stopped",
          status: { _tag: "Signaled", signal: "SIGKILL" }
        })
        expect(existsSync(`/proc/${containerd}`)).toBe(false)
        expect(existsSync(config.pidfile as string)).toBe(false)
        expect(existsSync(config.socket as string)).toBe(false)
      })
    )
  )

  it.live(
    "a containerd.pid naming a live process that is not containerd (pid reuse, or the old containerd's zombie): accepted, never answered, DaemonCrashed containerd-timeout at ~15 s",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const stranger = yield* liveProcess
          mkdirSync(`${dir}/exec/containerd`, { recursive: true })
          writeFileSync(`${dir}/exec/containerd/containerd.pid`, String(stranger.pid))
          const error = yield* Effect.flip(Effect.scoped(Dockerd.start(isolatedConfig(dir))))
          expect(error).toMatchObject({
            _tag: "DaemonCrashed",
            exitCode: 1,
            diagnosis: { cause: "containerd-timeout" }
          })
          if (error._tag === "DaemonCrashed") expect(error.elapsedMs).toBeGreaterThan(10_000)
          expect(isAlive(stranger.pid!)).toBe(true)
        })
      ),
    90_000
  )

  it.live(
    "stopped from outside with SIGTERM after ready: DaemonDied with exit code 0 and the shutdown in its log tail",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const daemon = yield* Dockerd.start(isolatedConfig(dir))
          yield* daemon.process.signal("SIGTERM")
          // One liveness check, then none for an hour: the exit, whenever the
          // shutdown ends, is what ends the supervision (not the failures of
          // a socket going away, however slow the machine).
          const error = yield* Effect.flip(Supervisor.supervise(daemon, onlyTheExit))
          expect(error).toMatchObject({
            _tag: "DaemonDied",
            pid: daemon.pid,
            exitCode: 0,
            status: { _tag: "Exited", code: 0 }
          })
          if (error._tag === "DaemonDied") {
            expect(error.logTail.join("\n")).toContain("Processing signal 'terminated'")
          }
        })
      )
  )

  it.live(
    "two daemons whose exec-roots share a prefix (/e1, /e10): stopping one leaves the other running",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const configOf = (n: string) =>
            isolatedConfig(dir, {
              socket: `${dir}/d${n}.sock`,
              dataRoot: `${dir}/data${n}`,
              execRoot: `${dir}/e${n}`,
              pidfile: `${dir}/d${n}.pid`
            })
          const other = yield* Dockerd.start(configOf("10"))
          yield* Effect.scoped(Dockerd.start(configOf("1")))
          expect(isAlive(other.pid)).toBe(true)
          expect(yield* infoAnswers(other.socket)).toBe(true)
        })
      )
  )
})
