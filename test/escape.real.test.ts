/**
 * The escape suite: from inside a Docker-enabled sandbox, root (what the
 * sandbox's user is, and what `docker run --privileged` inside gives) tries
 * the known ways out to the host, and each outcome must be what the
 * sandbox's `isolation` says: a route it lists as open is open (or the host
 * kernel lacks its target), every other route is refused.
 *
 * Non-destructive: test/fixtures/escape-probe.sh stops at the point that
 * proves access (a file opened for writing with nothing written, a device
 * opened for reading with nothing read) and never changes the host.
 *
 * One sandbox per runtime in {@link RUNTIMES}, on a host engine of the
 * test's own (scripts/seedScenario.ts `hostEnvironment`).
 */
import { execFile } from "node:child_process"
import { existsSync, readFileSync, readlinkSync } from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { promisify } from "node:util"
import { describe, expect, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { type HostEnvironment, hostEnvironment, SANDBOX_IMAGE } from "../scripts/seedScenario.js"
import * as DockerEngine from "../src/DockerEngine.js"
import * as Dockerd from "../src/Dockerd.js"
import { ProcessManager } from "../src/ProcessManager.js"
import * as Sandbox from "../src/Sandbox.js"
import * as SandboxSecurity from "../src/SandboxSecurity.js"
import { hasDockerd } from "./support/isolated.js"

const real = hasDockerd()
const run = promisify(execFile)

/**
 * The runtimes the suite runs on. Adding one is adding it here: every
 * route's test is made for each.
 */
const RUNTIMES = ["runc", "runsc"] as const
type Runtime = (typeof RUNTIMES)[number]

/** Where Docker inside also pulls and runs a container here. */
const RUNS_CONTAINERS: ReadonlyArray<Runtime> = ["runc", "runsc"]

const PROBE = readFileSync(new URL("./fixtures/escape-probe.sh", import.meta.url), "utf8")

/** The command line of the host process the sandbox looks for (and tries to ptrace). */
const HOST_MARK = ["sleep", "86399.5"] as const

const NAMESPACES = ["mnt", "uts", "ipc", "net", "pid", "cgroup", "user"] as const
const hostNamespaces = (): string =>
  NAMESPACES.map((ns) => readlinkSync(`/proc/self/ns/${ns}`)).join(" ")

/** The host kernel lacks what a route would reach: nothing to open there. */
const hostLacks = (route: SandboxSecurity.EscapeRoute): boolean => {
  switch (route) {
    case "sysrq-trigger":
      return !existsSync("/proc/sysrq-trigger")
    case "proc-sys-kernel":
      return !existsSync("/proc/sys/kernel/core_pattern")
    case "host-sys-kernel":
      return ![
        "uevent_helper",
        "rcu_expedited",
        "rcu_normal",
        "profiling",
        "mm/transparent_hugepage/enabled",
        "mm/ksm/run"
      ].some((file) => existsSync(`/sys/kernel/${file}`))
    default:
      return false
  }
}

interface Outcome {
  readonly outcome: "open" | "closed" | "absent"
  readonly detail: string
}

/** The routes whose target is a kernel's file: the host's only when the sandbox's kernel is the host's. */
const KERNEL_FILES: ReadonlyArray<SandboxSecurity.EscapeRoute> = [
  "sysrq-trigger",
  "proc-sys-kernel",
  "host-sys-kernel"
]

/** What the probe printed, by route. */
const parse = (lines: ReadonlyArray<string>): ReadonlyMap<string, Outcome> =>
  new Map(
    lines.flatMap((line) => {
      const match = /^route (\S+) (open|closed|absent) ?(.*)$/.exec(line)
      return match === null
        ? []
        : [[match[1]!, { outcome: match[2] as Outcome["outcome"], detail: match[3]! }] as const]
    })
  )

class Host extends Context.Tag("test/escape/Host")<
  Host,
  HostEnvironment & { readonly engineId: string; readonly markPid: number }
>() {}

const HostLive = Layer.scoped(
  Host,
  Effect.gen(function* () {
    const host = yield* hostEnvironment()
    const engine = yield* DockerEngine.make(host.socket)
    const { ID } = yield* engine.request("GET", "/info", {
      schema: Schema.Struct({ ID: Schema.String })
    })
    // A host process to look for and to try to ptrace; killed with the scope.
    const mark = yield* (yield* ProcessManager).exec(HOST_MARK, { killGrace: "1 second" })
    return { ...host, engineId: ID, markPid: mark.pid }
  }).pipe(Effect.orDie)
).pipe(Layer.provideMerge(Dockerd.layerNode))

/** Where a sandbox reached over a host socket has the shared directory. */
const SHARED_INSIDE = "/run/sandbox-docker-shared"

/**
 * A unix socket of this machine at `path` that forwards each connection to
 * `target`, closed with the scope; `accepted` counts the connections.
 */
const forwardTo = (path: string, target: string) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Net.Server; readonly accepted: () => number }>((resume) => {
      let accepted = 0
      const server = Net.createServer((client) => {
        accepted++
        const upstream = Net.connect(target)
        client.pipe(upstream).pipe(client)
        client.on("error", () => upstream.destroy())
        upstream.on("error", () => client.destroy())
      })
      server.listen(path, () => resume(Effect.succeed({ server, accepted: () => accepted })))
    }),
    ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )

// The first run on a fresh machine builds the Debian image (~3 min).
const TIMEOUT = Duration.toMillis(Duration.minutes(10))

/** Runs `argv` in the sandbox to its end: its exit status and (last 500) output lines. */
const execIn = (sandbox: Sandbox.Sandbox, argv: readonly [string, ...Array<string>]) =>
  Effect.scoped(
    Effect.gen(function* () {
      const handle = yield* sandbox.exec(argv, { killGrace: "1 second", tailLines: 500 })
      const status = yield* handle.awaitExit
      return { status, lines: yield* handle.logTail }
    })
  )

/**
 * Pulls the host's registry image with Docker inside and runs it on each
 * network the runtime allows (under runsc only the sandbox's own:
 * Gvisor's NestedNetworkUnsupported); what each printed.
 */
const pullAndRun = (sandbox: Sandbox.Sandbox, runtime: Runtime) =>
  Effect.gen(function* () {
    const host = yield* Host
    yield* Effect.scoped(Effect.flatMap(sandbox.docker.pull(host.image), (pull) => pull.wait))
    return yield* Effect.forEach(runtime === "runsc" ? ["host"] : ["host", "none"], (network) =>
      Effect.scoped(
        Effect.flatMap(
          sandbox.docker.run(host.image, ["/bin/busybox", "echo", `ran on ${network}`], {
            remove: true,
            network
          }),
          (container) => container.output
        )
      ).pipe(Effect.map((output) => ({ network, stdout: output.stdout })))
    )
  })

/** A Docker-enabled sandbox on `runtime`, Docker inside ready, and what the probe found in it. */
const probed = (runtime: Runtime) => {
  class Probed extends Context.Tag(`test/escape/Probed/${runtime}`)<
    Probed,
    {
      readonly sandbox: Sandbox.Sandbox
      readonly routes: ReadonlyMap<string, Outcome>
      /** The sandbox's /proc/version. */
      readonly kernel: string
      /** What inner containers printed, by network. */
      readonly ran: ReadonlyArray<{ readonly network: string; readonly stdout: string }>
    }
  >() {}
  const live = Layer.scoped(
    Probed,
    Effect.gen(function* () {
      const host = yield* Host
      const sandbox = yield* Sandbox.create(
        { image: SANDBOX_IMAGE, runtime, dockerEnabled: true, network: "host" },
        { engineSocket: host.socket, stopGrace: "3 seconds" }
      )
      yield* Effect.addFinalizer(() => sandbox.remove)
      // The routes are tried with Docker inside running, as its user has it.
      yield* sandbox.daemon
      // Docker inside at work first, then the probe (which loads the sandbox).
      const ran = RUNS_CONTAINERS.includes(runtime) ? yield* pullAndRun(sandbox, runtime) : []
      const { lines } = yield* execIn(sandbox, [
        "sh",
        "-c",
        PROBE,
        "escape-probe",
        host.socket,
        host.engineId,
        String(host.markPid),
        HOST_MARK.join(" "),
        hostNamespaces()
      ])
      const version = yield* execIn(sandbox, ["cat", "/proc/version"])
      return { sandbox, routes: parse(lines), kernel: version.lines.join("\n"), ran }
    }).pipe(Effect.orDie)
  )
  return { Probed, live }
}

describe.skipIf(!real)("escaping sandboxes", () => {
  layer(HostLive, { timeout: TIMEOUT, excludeTestServices: true })((it) => {
    for (const runtime of RUNTIMES) {
      const { Probed, live } = probed(runtime)
      it.layer(live, { timeout: TIMEOUT })(`a Docker-enabled ${runtime} sandbox`, (it) => {
        it.effect(`${runtime}: the sandbox reports its runtime and what it means`, () =>
          Effect.gen(function* () {
            const { sandbox } = yield* Probed
            expect(sandbox.isolation.runtime).toBe(runtime)
            expect(sandbox.isolation.kernel).toBe(runtime === "runsc" ? "sandbox" : "host")
            expect(sandbox.isolation.openRoutes.length === 0).toBe(runtime === "runsc")
          })
        )

        for (const route of SandboxSecurity.EscapeRoute.literals) {
          const open = runtime === "runc" && SandboxSecurity.RUNC_DOCKER_OPEN_ROUTES.includes(route)
          it.effect(
            open
              ? `${runtime}: ${route} stays open, as its isolation says (or the host kernel lacks it)`
              : KERNEL_FILES.includes(route)
                ? `${runtime}: ${route} does not reach the host (refused, or a file of the sandbox's own kernel)`
                : `${runtime}: ${route} is refused`,
            () =>
              Effect.gen(function* () {
                const { kernel, routes, sandbox } = yield* Probed
                const found = routes.get(route)
                if (found === undefined) {
                  return expect.fail(`no line for ${route}: ${JSON.stringify([...routes])}`)
                }
                const hostKernel = readFileSync("/proc/version", "utf8").trim()
                const reachesHost =
                  found.outcome === "open" &&
                  (!KERNEL_FILES.includes(route) || kernel === hostKernel)
                expect(sandbox.isolation.openRoutes.includes(route)).toBe(open)
                if (open && hostLacks(route)) expect(found.outcome, found.detail).toBe("absent")
                else expect(reachesHost, `${found.outcome}: ${found.detail}`).toBe(open)
              })
          )
        }

        if (runtime === "runsc") {
          it.scoped(
            "runsc (--host-uds=create): a host socket put in the shared directory, forwarding to the host engine, is refused to the sandbox, while this machine reaches the sockets made inside",
            () =>
              Effect.gen(function* () {
                const { sandbox } = yield* Probed
                const host = yield* Host
                const socket = sandbox.dockerSocket
                if (socket === undefined) {
                  return expect.fail("the runsc sandbox is not reached over a host socket")
                }
                // The host engine, behind a socket of this machine that the sandbox sees.
                const bait = Path.join(Path.dirname(socket), "host-engine.sock")
                const forwarder = yield* forwardTo(bait, host.socket)
                const engineId = `{{.ID}}`
                const byHost = yield* Effect.promise(() =>
                  run("docker", ["-H", `unix://${bait}`, "info", "--format", engineId])
                )
                // The forwarder reaches the host engine from here.
                expect(byHost.stdout.trim()).toBe(host.engineId)
                const accepted = forwarder.accepted()
                const inside = `${SHARED_INSIDE}/host-engine.sock`
                const tried = yield* execIn(sandbox, [
                  "sh",
                  "-c",
                  `test -S "$1" && echo "seen as a socket"; timeout 20 docker -H "unix://$1" info --format '${engineId}' 2>&1; echo "exit $?"`,
                  "sh",
                  inside
                ])
                // Seen, but not connectable: the refusal is runsc's, not a missing file.
                expect(tried.lines).toContain("seen as a socket")
                expect(tried.lines.join("\n")).not.toContain(host.engineId)
                expect(tried.lines.at(-1)).not.toBe("exit 0")
                expect(forwarder.accepted()).toBe(accepted)
                // The socket Docker inside made answers inside and here.
                const own = yield* execIn(sandbox, [
                  "docker",
                  "-H",
                  `unix://${SHARED_INSIDE}/docker.sock`,
                  "info",
                  "--format",
                  engineId
                ])
                expect(own.status).toMatchObject({ _tag: "Exited", code: 0 })
                const inner = yield* DockerEngine.make(socket)
                const innerInfo = yield* inner.request("GET", "/info", {
                  schema: Schema.Struct({ ID: Schema.String })
                })
                expect(own.lines).toEqual([innerInfo.ID])
                expect(innerInfo.ID).not.toBe(host.engineId)
              })
          )
        }

        if (RUNS_CONTAINERS.includes(runtime)) {
          it.effect(
            runtime === "runc"
              ? `${runtime}: the sandbox's cgroup namespace is its own, and Docker inside pulls and runs a container`
              : `${runtime}: Docker inside pulls and runs a container`,
            () =>
              Effect.gen(function* () {
                const { ran, sandbox } = yield* Probed
                if (runtime === "runc") {
                  // gVisor's Sentry has cgroups of its own, whatever the namespace.
                  const cgroup = yield* execIn(sandbox, ["readlink", "/proc/1/ns/cgroup"])
                  expect(cgroup.lines).toHaveLength(1)
                  expect(cgroup.lines[0]).not.toBe(readlinkSync("/proc/self/ns/cgroup"))
                }
                const networks = runtime === "runsc" ? ["host"] : ["host", "none"]
                expect(ran.map((run) => [run.network, run.stdout.trim()])).toEqual(
                  networks.map((network) => [network, `ran on ${network}`])
                )
              })
          )
        }
      })
    }

    it.scoped(
      "a runc sandbox without Docker: a cgroup namespace of its own, and no mount (Docker's default confinement), as its isolation says",
      () =>
        Effect.gen(function* () {
          const host = yield* Host
          const sandbox = yield* Sandbox.create(
            { image: SANDBOX_IMAGE, network: "host" },
            { engineSocket: host.socket }
          )
          yield* Effect.addFinalizer(() => sandbox.remove)
          expect(sandbox.isolation).toMatchObject({
            runtime: "runc",
            kernel: "host",
            openRoutes: []
          })
          const cgroup = yield* execIn(sandbox, ["readlink", "/proc/self/ns/cgroup"])
          expect(cgroup.lines[0]).not.toBe(readlinkSync("/proc/self/ns/cgroup"))
          // No CAP_SYS_ADMIN: not even a fresh proc can be mounted.
          const mount = yield* execIn(sandbox, [
            "sh",
            "-c",
            "mkdir -p /tmp/p && mount -t proc proc /tmp/p"
          ])
          expect(mount.status).toMatchObject({ _tag: "Exited" })
          expect(mount.status._tag === "Exited" && mount.status.code).not.toBe(0)
        })
    )
  })
})
