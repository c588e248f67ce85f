/**
 * The containerd client and its readiness check: on a real dockerd's own
 * containerd (answers, a SIGSTOPped containerd times the check out, an
 * address where nobody serves falls back to `/info`), and without a daemon:
 * how a version answer is read. Where dockerd's rules put containerd is in
 * `dockerdSettings.test.ts`.
 */
import { execFile } from "node:child_process"
import { existsSync, readdirSync, readlinkSync } from "node:fs"
import * as Path from "node:path"
import { promisify } from "node:util"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Containerd from "../src/Containerd.js"
import * as DockerdConfig from "../src/DockerdConfig.js"
import * as DockerEngine from "../src/DockerEngine.js"
import * as DockerdSettings from "../src/DockerdSettings.js"
import { readPidfile } from "../src/internal/processTree.js"
import * as Probe from "../src/Probe.js"
import * as TestDaemon from "./support/testDaemon.js"

const run = promisify(execFile)
const decodeConfig = Schema.decodeUnknownSync(DockerdConfig.DockerdConfig)

/** Runs `probe` once with `timeout` for each check. */
const runOnce = (probe: Probe.Probe, timeout: Duration.DurationInput) =>
  Effect.either(Probe.run(probe, { timeoutFor: () => Duration.decode(timeout) }))

/** The sockets this process has open (idle kept-alive ones included). */
const openSockets = () =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith("socket:")
    } catch {
      return false
    }
  }).length

describe.skipIf(!TestDaemon.runsRealDaemon)(
  "containerd's version service, on a real dockerd",
  () => {
    it.live(
      "answers what `docker info` says; SIGSTOPped it times the check out, continued it answers again; the session goes with the scope",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const daemon = yield* TestDaemon.start()
            const settings = yield* DockerdSettings.resolve(
              decodeConfig({
                execRoot: Path.join(daemon.dir, "exec"),
                extraArgs: [`--config-file=${Path.join(daemon.dir, "daemon.json")}`]
              })
            )
            const address = yield* DockerdSettings.containerdAddress(settings).pipe(
              Effect.provide(NodeFileSystem.layer)
            )
            expect(address).toBe(
              existsSync(DockerdSettings.SYSTEM_CONTAINERD)
                ? DockerdSettings.SYSTEM_CONTAINERD
                : Path.join(daemon.dir, "exec/containerd/containerd.sock")
            )
            // The client in a scope of its own, closed while containerd still
            // serves: its connection must go with it.
            const before = openSockets()
            yield* Effect.scoped(
              Effect.gen(function* () {
                const client = yield* Containerd.make(`unix://${address}`)
                // Connecting ahead: the call after it uses that connection.
                expect(yield* client.warm).toBe(true)
                expect(openSockets()).toBe(before + 1)
                const version = yield* client.version
                const info = yield* Effect.promise(() =>
                  run("docker", ["-H", daemon.host, "info", "--format", "{{.ContainerdCommit.ID}}"])
                )
                expect(version.revision).toBe(info.stdout.trim())
                expect(version.version.length).toBeGreaterThan(0)
                expect(openSockets()).toBe(before + 1)

                const check = Probe.containerdVersion(client)
                const pid = yield* readPidfile(
                  Path.join(daemon.dir, "exec/containerd/containerd.pid")
                )
                expect(pid).toBeDefined()
                process.kill(pid!, "SIGSTOP")
                const stopped = yield* runOnce(check, "300 millis").pipe(
                  Effect.ensuring(Effect.sync(() => process.kill(pid!, "SIGCONT")))
                )
                expect(Either.isLeft(stopped) && stopped.left).toMatchObject({
                  _tag: "ProbeTimedOut",
                  probe: "containerd",
                  timeoutMs: 300
                })
                const again = yield* runOnce(check, "5 seconds")
                expect(Either.isRight(again) && again.right[0]!.value).toBeInstanceOf(
                  Containerd.ContainerdVersion
                )
              })
            )
            // (A destroyed socket's descriptor is closed a turn later.)
            let after = openSockets()
            for (let turn = 0; turn < 50 && after > before; turn++) {
              yield* Effect.sleep("10 millis")
              after = openSockets()
            }
            expect(after).toBe(before)
          })
        ),
      60_000
    )

    it.live(
      "an address where nobody serves is `not yet`; with a fallback the check asks the Engine's /info",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const daemon = yield* TestDaemon.start()
            const nowhere = yield* Containerd.make(Path.join(daemon.dir, "no-containerd.sock"))
            const before = openSockets()
            expect(yield* nowhere.warm).toBe(false)
            expect(openSockets()).toBe(before)
            const alone = yield* runOnce(Probe.containerdVersion(nowhere), "2 seconds")
            expect(Either.isLeft(alone) && alone.left).toMatchObject({
              _tag: "ProbeNotYet",
              probe: "containerd"
            })
            const withFallback = yield* runOnce(
              Probe.containerdVersion(nowhere, { fallback: daemon.engine }),
              "5 seconds"
            )
            expect(Either.isRight(withFallback) && withFallback.right[0]!.value).toBeInstanceOf(
              DockerEngine.InfoAnswer
            )
          })
        ),
      60_000
    )
  }
)

describe("containerd where nobody serves", () => {
  it.scopedLive("no socket there is ContainerdUnreachable, naming the address and the errno", () =>
    Effect.gen(function* () {
      const address = "/nonexistent-sandbox-docker/containerd.sock"
      const client = yield* Containerd.make(address)
      expect(yield* client.warm).toBe(false)
      expect(yield* Effect.flip(client.version)).toMatchObject({
        _tag: "ContainerdUnreachable",
        address,
        code: "ENOENT",
        reason: expect.any(String)
      })
    })
  )
})

describe("reading a version answer", () => {
  /** A gRPC frame around protobuf bytes. */
  const frame = (...bytes: Array<number>) => {
    const out = new Uint8Array(5 + bytes.length)
    new DataView(out.buffer).setUint32(1, bytes.length)
    out.set(bytes, 5)
    return out
  }
  const text = (field: number, value: string) => {
    const encoded = [...new TextEncoder().encode(value)]
    return [field * 8 + 2, encoded.length, ...encoded]
  }

  it("reads fields 1 and 2 and skips the others", () => {
    expect(
      Containerd.readMessage(
        frame(...text(1, "1.6.20"), 0x18, 0x96, 0x01, ...text(2, "abc"), ...text(7, "x"))
      )
    ).toEqual({ version: "1.6.20", revision: "abc" })
  })

  it("says what is wrong with a frame it cannot read", () => {
    expect(Containerd.readMessage(new Uint8Array([0, 0]))).toMatch(/shorter than gRPC's/)
    expect(Containerd.readMessage(new Uint8Array([1, 0, 0, 0, 0]))).toMatch(/compressed/)
    expect(Containerd.readMessage(frame(...text(1, "abc")).subarray(0, 8))).toMatch(/prefix says 5/)
    expect(Containerd.readMessage(frame(0x0a, 0x09, 0x61))).toMatch(/truncated string/)
    expect(Containerd.readMessage(frame(0x0b))).toMatch(/wire type 3/)
    expect(Containerd.readMessage(frame(0x0a, 0x01, 0xff))).toMatch(/not UTF-8/)
  })
})
