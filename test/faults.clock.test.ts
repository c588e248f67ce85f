/**
 * The fault matrix (docs/failure-modes.md), the rows this machine cannot show
 * with a real daemon, or not deterministically: a scripted dockerd prints the
 * real log lines of the failure under TestClock, through the same
 * `Dockerd.start` a sandbox uses (location `remote`: the probe is `docker
 * info` run through the process manager): each row's typed error, and every
 * diagnosis the library knows. (The exit codes are the CLI's: its tests run it.)
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { diagnose } from "../src/Diagnosis.js"
import * as Dockerd from "../src/Dockerd.js"
import * as DockerHost from "../src/DockerHost.js"
import * as ReadinessPolicy from "../src/ReadinessPolicy.js"
import * as TestProcessManager from "../src/TestProcessManager.js"

type Script = TestProcessManager.ProcessScript

const SOCKET = "/run/sandbox/docker.sock"

/** `docker info` while nothing serves the socket: exits 1 at once, "not yet". */
const dockerCliRefused: Script = {
  output: [
    {
      at: "5 millis",
      text: `Cannot connect to the Docker daemon at unix://${SOCKET}. Is the docker daemon running?\n`
    }
  ],
  exit: { at: "10 millis", code: 1 }
}

/** `docker info` on a daemon that accepted the connection and never answers. */
const dockerCliHangs: Script = {}

/** A dockerd that prints `lines` (10 ms apart) and exits 1 at `exitAt`. */
const crashing = (lines: ReadonlyArray<string>, exitAt: Duration.DurationInput): Script => ({
  output: lines.map((text, i) => ({ at: Duration.millis((i + 1) * 10), text: `${text}\n` })),
  exit: { at: exitAt, code: 1 }
})

const info = (msg: string) => `time="2026-11-26T14:00:00.000000000Z" level=info msg="${msg}"`
const warning = (msg: string, error?: string) =>
  `time="2026-11-26T14:00:00.000000000Z" level=warning msg="${msg}"${error === undefined ? "" : ` error="${error}"`}`

/** Starts a scripted daemon, runs virtual time on, returns the outcome and its virtual time. */
const startScripted = (
  dockerd: Script,
  options: { readonly docker?: Script; readonly policy?: ReadinessPolicy.ReadinessPolicy } = {}
) =>
  Effect.gen(function* () {
    const test = yield* TestProcessManager.TestProcessManager
    const fiber = yield* Effect.fork(
      Effect.scoped(
        Effect.gen(function* () {
          const outcome = yield* Effect.either(
            Dockerd.start({ socket: SOCKET }, options.policy ?? ReadinessPolicy.fast, {
              location: "remote"
            })
          )
          return { outcome, at: yield* Clock.currentTimeMillis }
        })
      )
    )
    yield* TestClock.adjust("2 minutes")
    const result = yield* Fiber.join(fiber)
    return { ...result, running: yield* test.running }
  }).pipe(
    Effect.provide(
      Layer.merge(
        TestProcessManager.layer([
          { match: "dockerd", script: dockerd },
          { match: "docker", script: options.docker ?? dockerCliRefused }
        ]),
        // A remote start never asks the host; its type needs one.
        DockerHost.layer
      )
    )
  )

describe("faults a real daemon cannot show here (TestProcessManager + TestClock)", () => {
  it.effect(
    "devices cgroup missing (gVisor, cgroup v1 without devices): DaemonCrashed, devices-cgroup-missing",
    () =>
      Effect.gen(function* () {
        const { outcome, at, running } = yield* startScripted(
          crashing(
            [
              info("Starting up"),
              info("libcontainerd: started new containerd process"),
              warning("Your kernel does not support cgroup memory limit"),
              "failed to start daemon: Devices cgroup isn't mounted"
            ],
            "1300 millis"
          )
        )
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(at).toBe(1300)
        expect(error).toMatchObject({
          _tag: "DaemonCrashed",
          exitCode: 1,
          diagnosis: { cause: "devices-cgroup-missing" }
        })
        expect(error.message).toContain("mount -t cgroup -o devices")
        expect(running).toEqual([])
      })
  )

  it.effect(
    "iptables unusable (no nat table in the kernel): DaemonCrashed, iptables, past the wrapped lines",
    () =>
      Effect.gen(function* () {
        const { outcome, at } = yield* startScripted(
          crashing(
            [
              info("Loading containers: start."),
              "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: iptables failed: iptables --wait -t nat -N DOCKER: iptables v1.8.9 (legacy): can't initialize iptables table `nat': Table does not exist (do you need to insmod?)",
              "Perhaps iptables or your kernel needs to be upgraded.",
              " (exit status 3)"
            ],
            "900 millis"
          )
        )
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(at).toBe(900)
        expect(error).toMatchObject({ _tag: "DaemonCrashed", diagnosis: { cause: "iptables" } })
        expect(error.message).toContain("--iptables=false")
      })
  )

  it.effect("graph driver not supported (overlay2 under gVisor): DaemonCrashed, graph-driver", () =>
    Effect.gen(function* () {
      const { outcome } = yield* startScripted(
        crashing(
          [
            info("Starting up"),
            "failed to start daemon: error initializing graphdriver: driver not supported"
          ],
          "1100 millis"
        )
      )
      expect(Either.flip(outcome).pipe(Either.getOrThrow)).toMatchObject({
        _tag: "DaemonCrashed",
        diagnosis: { cause: "graph-driver" }
      })
    })
  )

  it.effect(
    "data-root full: only containerd's warnings name it, the fatal line does not: disk-full",
    () =>
      Effect.gen(function* () {
        const { outcome } = yield* startScripted(
          crashing(
            [
              warning(
                "failed to load plugin io.containerd.metadata.v1.bolt",
                "write /data/containerd/daemon/io.containerd.metadata.v1.bolt/meta.db: no space left on device"
              ),
              warning(
                "failed to load plugin io.containerd.grpc.v1.tasks",
                "no runtimes available to create task service"
              ),
              `failed to start daemon: failed to dial "/exec/containerd/containerd.sock": unknown service containerd.services.namespaces.v1.Namespaces: not implemented`
            ],
            "1 second"
          )
        )
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(error).toMatchObject({ _tag: "DaemonCrashed", diagnosis: { cause: "disk-full" } })
        if (error._tag === "DaemonCrashed") expect(error.diagnosis?.line).toContain("meta.db")
      })
  )

  it.effect(
    "restart on an exec-root whose old containerd lingers: accepted, never answered, then containerd-timeout at 15 s",
    () =>
      Effect.gen(function* () {
        const { outcome, at, running } = yield* startScripted(
          {
            output: [
              { at: "10 millis", text: `${info("Starting up")}\n` },
              {
                at: "14990 millis",
                text: "failed to start containerd: timeout waiting for containerd to start\n"
              }
            ],
            exit: { at: "15 seconds", code: 1 }
          },
          { docker: dockerCliHangs }
        )
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(at).toBe(15_000)
        expect(error).toMatchObject({
          _tag: "DaemonCrashed",
          diagnosis: { cause: "containerd-timeout" }
        })
        expect(running).toEqual([])
      })
  )

  it.effect(
    "the same with a 10 s deadline: DaemonNotReady at 10 s, last failure a probe timeout, no diagnosis yet",
    () =>
      Effect.gen(function* () {
        const { outcome, at, running } = yield* startScripted(
          crashing([info("Starting up")], "15 seconds"),
          { docker: dockerCliHangs, policy: ReadinessPolicy.fast.withDeadline("10 seconds") }
        )
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(at).toBe(10_000)
        expect(error._tag).toBe("DaemonNotReady")
        if (error._tag !== "DaemonNotReady") return
        expect(error.lastFailures.map((f) => f._tag)).toEqual(["ProbeTimedOut"])
        expect(error.diagnosis).toBeUndefined()
        // The daemon and every `docker info` it was asked were stopped.
        expect(running).toEqual([])
      })
  )
})

/**
 * Every cause `Diagnosis` knows, each from a line dockerd prints for it (from
 * real runs, or its source where this machine cannot make it), and a word of
 * the hint that says what to do.
 */
const EVERY_CAUSE: ReadonlyArray<readonly [cause: string, line: string, hint: string]> = [
  ["unknown-flag", "unknown flag: --no-such-flag", "dockerd --help"],
  [
    "pidfile-in-use",
    "failed to start daemon: pid file found, ensure docker is not running or delete /run/sandbox/docker.pid",
    "--pidfile"
  ],
  [
    "devices-cgroup-missing",
    "failed to start daemon: Devices cgroup isn't mounted",
    "mount -t cgroup -o devices"
  ],
  [
    "containerd-timeout",
    "failed to start containerd: timeout waiting for containerd to start",
    "--exec-root"
  ],
  [
    "iptables",
    "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: Iptables not found",
    "--iptables=false"
  ],
  [
    "socket-is-directory",
    "failed to load listeners: can't create unix socket /run/sandbox/docker.sock: is a directory",
    "Remove the directory"
  ],
  [
    "socket-unavailable",
    "failed to load listeners: can't create unix socket /tmp/x/sock/docker.sock: read-only file system",
    "writable"
  ],
  [
    "graph-driver",
    "failed to start daemon: error initializing graphdriver: prerequisites for driver not satisfied (wrong filesystem?)",
    "--storage-driver=vfs"
  ],
  [
    "disk-full",
    "failed to start containerd: failed to encode general config: write /tmp/x/exec/containerd/containerd.toml: no space left on device",
    "Free space"
  ],
  ["read-only-filesystem", "chmod /tmp/x/data: read-only file system", "writable filesystem"],
  [
    "permission-denied",
    "failed to start daemon: mkdir /var/lib/docker/overlay2: permission denied",
    "Run dockerd as root"
  ],
  [
    "bad-config",
    "unable to configure the Docker daemon with file /tmp/sdt-x/bad.json: invalid character '\\n' in literal true (expecting 'e')",
    "daemon.json"
  ],
  [
    "netns-missing",
    'Cannot open network namespace "nope": No such file or directory',
    "ip netns add"
  ],
  [
    "address-in-use",
    "failed to load listeners: listen tcp 127.0.0.1:2375: bind: address already in use",
    "choose another --socket"
  ]
]

describe("every diagnosis, from its dockerd line, through Dockerd.start (TestClock)", () => {
  it.effect.each(EVERY_CAUSE)(
    "%s: DaemonCrashed at the exit, with the cause, its summary, its hint and the line",
    ([cause, line, hint]) =>
      Effect.gen(function* () {
        const { outcome, at, running } = yield* startScripted(
          crashing([info("Starting up"), line], "500 millis")
        )
        expect(at).toBe(500)
        const error = Either.flip(outcome).pipe(Either.getOrThrow)
        expect(error).toMatchObject({
          _tag: "DaemonCrashed",
          exitCode: 1,
          elapsedMs: 500,
          diagnosis: { cause, line }
        })
        if (error._tag !== "DaemonCrashed") return
        expect(error.diagnosis?.summary.length).toBeGreaterThan(0)
        expect(error.diagnosis?.hint).toContain(hint)
        // The message a person reads has the summary and the hint.
        expect(error.message).toContain(error.diagnosis?.summary)
        expect(error.logTail.at(-1)).toBe(line)
        expect(running).toEqual([])
      })
  )

  it("warnings alone never give a diagnosis other than a full or read-only filesystem", () => {
    expect(diagnose([warning("Your kernel does not support cgroup blkio weight")])).toBeUndefined()
    expect(
      diagnose([warning("failed to find iptables", 'exec: "iptables": executable file not found')])
    ).toBeUndefined()
    expect(diagnose([warning("x", "mkdir /d: read-only file system"), "exit"])?.cause).toBe(
      "read-only-filesystem"
    )
  })
})
