/**
 * Dockerd against the real daemon (Debian's docker.io): start, report,
 * typed start errors, supervision after ready, restart, clean stop.
 */
import { execFile } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { promisify } from "node:util"
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Containerd from "../src/Containerd.js"
import * as Dockerd from "../src/Dockerd.js"
import { readPidfile } from "../src/internal/processTree.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as Supervisor from "../src/Supervisor.js"
import { hasDockerd, isolatedConfig, leftovers } from "./support/isolated.js"
import { failedStartExecs, withDir } from "./support/withDir.js"

const run = promisify(execFile)

/** `docker info --format FORMAT` on `socket`, trimmed. */
const dockerInfo = (socket: string, format: string) =>
  Effect.promise(() =>
    run("docker", ["-H", `unix://${socket}`, "info", "--format", format]).then((out) =>
      out.stdout.trim()
    )
  )
const real = hasDockerd()

const fastLiveness = new Supervisor.LivenessPolicy({
  interval: Duration.millis(100),
  timeout: Duration.millis(300),
  failureThreshold: 2
})

describe.skipIf(!real)("Dockerd on a real daemon", () => {
  it.live(
    "at log level warn (no `Docker daemon` line to read) the storage driver comes from the data-root; the versions from /_ping",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const config = isolatedConfig(dir, { extraArgs: ["--log-level=warn"] })
          const daemon = yield* Dockerd.start(config)
          const tail = yield* daemon.process.logTail
          expect(tail.some((line) => line.includes("Docker daemon"))).toBe(false)
          const info = yield* dockerInfo(config.socket as string, "{{.ServerVersion}} {{.Driver}}")
          expect(`${daemon.serverVersion} ${daemon.storageDriver}`).toBe(info)
        })
      )
  )

  it.live("starts, reports, serves a real client, and leaves nothing behind", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const config = isolatedConfig(dir)
        const daemon = yield* Effect.scoped(
          Effect.gen(function* () {
            const daemon = yield* Dockerd.start(config)
            expect(daemon.pid).toBeGreaterThan(0)
            expect(daemon.serverVersion).toMatch(/^\d+\.\d+/)
            expect(daemon.apiVersion).toMatch(/^1\.\d+$/)
            expect(daemon.storageDriver.length).toBeGreaterThan(0)
            expect(daemon.timeToReadyMs).toBeGreaterThan(0)
            expect(daemon.report.results.map((r) => [r.probe, r._tag])).toEqual([
              ["socket", "ProbeSucceeded"],
              ["ping", "ProbeSucceeded"],
              ["containerd", "ProbeSucceeded"]
            ])
            // containerd was asked at the address dockerd's rules give (no
            // fallback to `/info`), and the versions came from `/_ping` and
            // dockerd's log; `docker info` agrees with them.
            expect(daemon.report.resultOf("containerd")).toBeInstanceOf(
              Containerd.ContainerdVersion
            )
            const info = yield* dockerInfo(
              config.socket as string,
              "{{.ServerVersion}} {{.Driver}} {{.ContainerdCommit.ID}}"
            )
            expect(info).toBe(
              `${daemon.serverVersion} ${daemon.storageDriver} ${(daemon.report.resultOf("containerd") as Containerd.ContainerdVersion).revision}`
            )
            // A container from a tiny image made from Debian's busybox-static.
            yield* Effect.promise(() => importBusybox(dir, config.socket as string))
            const hello = yield* Effect.promise(() =>
              run("docker", [
                "-H",
                `unix://${config.socket}`,
                "run",
                "--rm",
                "--network",
                "none",
                "sdt-busybox",
                "/bin/busybox",
                "echo",
                "hello from inside"
              ])
            )
            expect(hello.stdout.trim()).toBe("hello from inside")
            return daemon
          })
        )
        expect(yield* Effect.promise(() => leftovers(dir))).toEqual([])
        expect(existsSync(config.pidfile as string)).toBe(false)
        expect(existsSync(config.socket as string)).toBe(false)
        return daemon
      })
    )
  )

  it.live("an unknown flag: DaemonCrashed with the flag in the log tail and a diagnosis", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(
          Effect.scoped(Dockerd.start(isolatedConfig(dir, { extraArgs: ["--no-such-flag"] })))
        )
        expect(error._tag).toBe("DaemonCrashed")
        if (error._tag !== "DaemonCrashed") return
        expect(error.exitCode).toBe(1)
        expect(error.logTail.join("\n")).toContain("unknown flag: --no-such-flag")
        expect(error.diagnosis?.cause).toBe("unknown-flag")
        expect(error.message).toContain("--no-such-flag")
      })
    )
  )

  it.live("a pidfile holding a live pid: PidfileInUse, the file left alone, nothing spawned", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const config = isolatedConfig(dir)
        const live = execFile("sleep", ["30"])
        try {
          writeFileSync(config.pidfile as string, `${live.pid}\n`)
          const { error, execs } = yield* failedStartExecs(config)
          expect(error).toMatchObject({
            _tag: "PidfileInUse",
            pid: live.pid,
            pidfile: config.pidfile
          })
          expect(error.message).toContain("stop that daemon first")
          expect(readFileSync(config.pidfile as string, "utf8")).toBe(`${live.pid}\n`)
          expect(execs).toEqual([])
        } finally {
          live.kill("SIGKILL")
        }
      })
    )
  )

  it.live(
    "a dead pid or garbage in the pidfile: the daemon starts, and the pidfile is its own",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const config = isolatedConfig(dir)
          // A pid that was alive and is no more: a child that has exited and was reaped.
          const dead = yield* Effect.promise(
            () =>
              new Promise<number>((resolve) => {
                const child = execFile("true")
                child.on("close", () => resolve(child.pid!))
              })
          )
          expect(existsSync(`/proc/${dead}`)).toBe(false)
          for (const stale of [`${dead}\n`, "not a pid\n"]) {
            writeFileSync(config.pidfile as string, stale)
            const pidfile = yield* Effect.scoped(
              Effect.map(Dockerd.start(config), (daemon) => ({
                pid: daemon.pid,
                written: readFileSync(config.pidfile as string, "utf8").trim()
              }))
            )
            expect(pidfile.written).toBe(String(pidfile.pid))
            // The stop removed the pidfile it had.
            expect(existsSync(config.pidfile as string)).toBe(false)
          }
        })
      )
  )

  it.live("a missing binary: DockerNotInstalled with the install hint", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(
          Effect.scoped(Dockerd.start(isolatedConfig(dir, { binary: "/nonexistent/dockerd" })))
        )
        expect(error).toMatchObject({
          _tag: "DockerNotInstalled",
          binary: "/nonexistent/dockerd",
          searched: ["/nonexistent/dockerd"]
        })
        expect(error.message).toContain("apt-get install docker.io")
      })
    )
  )

  it.live(
    "a directory at the socket path and an unwritable data-root are refused before spawning",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          mkdirSync(`${dir}/docker.sock`)
          const socket = yield* failedStartExecs(isolatedConfig(dir))
          expect(socket.error).toMatchObject({
            _tag: "SocketPathIsDirectory",
            socket: `${dir}/docker.sock`
          })
          expect(socket.execs).toEqual([])
          writeFileSync(`${dir}/file`, "")
          const data = yield* failedStartExecs(
            isolatedConfig(dir, { socket: `${dir}/d2.sock`, dataRoot: `${dir}/file/data` })
          )
          expect(data.error).toMatchObject({
            _tag: "DirectoryNotWritable",
            field: "data-root",
            path: `${dir}/file/data`,
            reason: expect.stringContaining("not a directory")
          })
          expect(data.execs).toEqual([])
        })
      )
  )

  it.live(
    "SIGSTOP after ready: liveness fails, supervision ends as DaemonUnhealthy, the stop does not hang",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const error = yield* Effect.scoped(
            Effect.gen(function* () {
              const daemon = yield* Dockerd.start(isolatedConfig(dir, { stopGrace: 2_000 }))
              yield* daemon.process.signal("SIGSTOP")
              return yield* Effect.flip(Supervisor.supervise(daemon, fastLiveness))
            })
          )
          expect(error).toMatchObject({
            _tag: "DaemonUnhealthy",
            consecutiveFailures: 2,
            restarts: 0,
            lastFailure: { _tag: "ProbeTimedOut", probe: "ping", timeoutMs: 300 }
          })
        })
      )
  )

  it.live("SIGKILL after ready: DaemonDied with the signal", () =>
    withDir((dir) =>
      Effect.gen(function* () {
        const error = yield* Effect.scoped(
          Effect.gen(function* () {
            const daemon = yield* Dockerd.start(isolatedConfig(dir))
            yield* daemon.process.signal("SIGKILL")
            return { daemon, error: yield* Effect.flip(Supervisor.supervise(daemon, fastLiveness)) }
          })
        )
        expect(error.error).toMatchObject({
          _tag: "DaemonDied",
          pid: error.daemon.pid,
          status: { _tag: "Signaled", signal: "SIGKILL" },
          signal: "SIGKILL",
          restarts: 0
        })
        expect(error.error).not.toHaveProperty("exitCode")
        if (error.error._tag === "DaemonDied") {
          expect(error.error.logTail.join("\n")).toContain("API listen on")
        }
      })
    )
  )

  it.live(
    "SIGKILL after ready with on-failure: restarted on a new pid, spawned only once the old dockerd and its containerd are gone, and ready again",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const config = isolatedConfig(dir)
          const ready: Array<{ pid: number; containerd: number | undefined }> = []
          // What was still there of the first daemon when the second was spawned.
          const oldTreeAtRespawn: Array<Array<number>> = []
          const readyAgain = yield* Effect.makeLatch(false)
          const fiber = yield* Supervisor.run(config, {
            liveness: fastLiveness,
            restart: Supervisor.onFailure(2, "50 millis"),
            onEvent: (event) =>
              event._tag === "Spawned" && ready.length === 1
                ? Effect.sync(() => {
                    const { pid, containerd } = ready[0]!
                    oldTreeAtRespawn.push(
                      [pid, containerd ?? -1].filter((p) => existsSync(`/proc/${p}`))
                    )
                  })
                : Effect.void,
            onReady: (daemon) =>
              Effect.gen(function* () {
                ready.push({
                  pid: daemon.pid,
                  containerd: yield* readPidfile(`${dir}/exec/containerd/containerd.pid`)
                })
                if (ready.length === 1) yield* daemon.process.signal("SIGKILL")
                else yield* readyAgain.open
              })
          }).pipe(Effect.fork)
          yield* readyAgain.await.pipe(Effect.timeout("60 seconds"))
          yield* Fiber.interrupt(fiber)
          expect(ready).toHaveLength(2)
          expect(ready[0]!.containerd).toEqual(expect.any(Number))
          expect(ready[1]!.pid).not.toBe(ready[0]!.pid)
          expect(oldTreeAtRespawn).toEqual([[]])
        })
      )
  )

  it.live(
    "directories from daemon.json and a running container: a stop by SIGKILL leaves no process, mount, cgroup or pidfile",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          // The configuration leaves data-root, exec-root and pidfile to
          // dockerd, whose config file puts them here.
          writeFileSync(
            `${dir}/daemon.json`,
            JSON.stringify({
              "data-root": `${dir}/store`,
              "exec-root": `${dir}/run`,
              pidfile: `${dir}/run.pid`
            })
          )
          const config = {
            socket: `${dir}/docker.sock`,
            network: "private" as const,
            // No grace: SIGKILL at once, so dockerd stops no container and
            // removes nothing itself.
            stopGrace: 0,
            extraArgs: [`--config-file=${dir}/daemon.json`]
          }
          const container = yield* Effect.scoped(
            Effect.gen(function* () {
              const daemon = yield* Dockerd.start(config)
              expect(daemon.report.resultOf("containerd")).toBeInstanceOf(
                Containerd.ContainerdVersion
              )
              expect(existsSync(`${dir}/run.pid`)).toBe(true)
              yield* Effect.promise(() => importBusybox(dir, config.socket))
              const docker = (...args: Array<string>) =>
                Effect.promise(() =>
                  run("docker", ["-H", `unix://${config.socket}`, ...args]).then((out) =>
                    out.stdout.trim()
                  )
                )
              const id = yield* docker(
                "run",
                "-d",
                "--network",
                "none",
                "sdt-busybox",
                "/bin/busybox",
                "sleep",
                "600"
              )
              const pid = Number(yield* docker("inspect", "--format", "{{.State.Pid}}", id))
              expect(existsSync(`/proc/${pid}`)).toBe(true)
              const cgroups = yield* cgroupDirsNaming(id)
              expect(cgroups.length).toBeGreaterThan(0)
              return { id, pid }
            })
          )
          // The container's process is not left to init, nor its cgroups behind.
          expect(existsSync(`/proc/${container.pid}`)).toBe(false)
          expect(yield* cgroupDirsNaming(container.id)).toEqual([])
          expect(existsSync(`${dir}/run.pid`)).toBe(false)
          expect(existsSync(config.socket)).toBe(false)
          // (withDir: no process names the directory, nothing is mounted under it.)
        })
      ),
    90_000
  )

  it.live(
    "closing the scope while starting (dockerd spawned, not yet ready) stops everything it started",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          const spawned = yield* Deferred.make<number>()
          const fiber = yield* Dockerd.start(isolatedConfig(dir), ReadinessPolicy.fast, {
            onEvent: (event) =>
              event._tag === "Spawned" ? Deferred.succeed(spawned, event.pid) : Effect.void
          }).pipe(Scope.extend(scope), Effect.fork)
          const pid = yield* Deferred.await(spawned)
          // Interrupted before it was ready (the start has not returned).
          expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
          expect(existsSync(`/proc/${pid}`)).toBe(true)
          yield* Fiber.interrupt(fiber)
          yield* Scope.close(scope, Exit.void)
          expect(existsSync(`/proc/${pid}`)).toBe(false)
          expect(yield* Effect.promise(() => leftovers(dir))).toEqual([])
          expect(existsSync(`${dir}/docker.sock`)).toBe(false)
          expect(existsSync(`${dir}/docker.pid`)).toBe(false)
        })
      )
  )

  it.live(
    "a start cut short by its caller after the spawn (an outer race lost) stops its daemon at once, while the caller's scope is open",
    () =>
      withDir((dir) =>
        Effect.gen(function* () {
          const spawned = yield* Deferred.make<number>()
          const outcome = yield* Dockerd.start(isolatedConfig(dir), ReadinessPolicy.fast, {
            onEvent: (event) =>
              event._tag === "Spawned" ? Deferred.succeed(spawned, event.pid) : Effect.void
          }).pipe(
            Effect.raceFirst(
              Effect.zipRight(Deferred.await(spawned), Effect.fail("cut short" as const))
            ),
            Effect.either
          )
          expect(outcome).toEqual(Either.left("cut short"))
          // The test's scope is still open: nothing of the daemon is left.
          const pid = yield* Deferred.await(spawned)
          expect(existsSync(`/proc/${pid}`)).toBe(false)
          expect(yield* Effect.promise(() => leftovers(dir))).toEqual([])
          expect(existsSync(`${dir}/docker.sock`)).toBe(false)
        })
      )
  )

  it.live("invalid configuration names the field", () =>
    Effect.gen(function* () {
      const result = yield* Effect.either(
        Effect.scoped(Dockerd.start({ socket: "relative.sock" })).pipe(
          Effect.provide(Dockerd.layerNode)
        )
      )
      const error = Either.flip(result).pipe(Either.getOrThrow)
      expect(error).toMatchObject({ _tag: "InvalidConfig", field: "socket" })
    })
  )
})

/** Cgroup directories whose name holds `id` (a container's, by either cgroup driver). */
const cgroupDirsNaming = (id: string) =>
  Effect.promise(() =>
    run("find", ["/sys/fs/cgroup", "-maxdepth", "5", "-type", "d", "-name", `*${id}*`]).then(
      (out) => out.stdout.split("\n").filter((line) => line !== "")
    )
  )

/** Imports a tiny image made from Debian's busybox-static as `sdt-busybox`. */
const importBusybox = async (dir: string, socket: string) => {
  const root = `${dir}/busybox-root`
  mkdirSync(`${root}/bin`, { recursive: true })
  await run("cp", ["/bin/busybox", `${root}/bin/busybox`])
  await run("sh", [
    "-c",
    'tar -C "$1" -c . | docker -H "unix://$2" import - sdt-busybox >/dev/null',
    "sh",
    root,
    socket
  ])
}
