/**
 * The gVisor preflight's reading of a runsc registration: its arguments as
 * runsc reads flags, the release in a version line, and which problem each
 * registration has (the real engine's answers: sandbox.gvisor.real.test.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Option from "effect/Option"
import * as Gvisor from "../src/Gvisor.js"

describe("Gvisor.readArgs", () => {
  it("reads --x=v, --x v, -x=v and a bare boolean the way runsc's flags do; the last wins", () => {
    expect(Gvisor.readArgs(["--net-raw", "--network=host"])).toEqual({
      network: "host",
      netRaw: true,
      hostUds: undefined
    })
    expect(Gvisor.readArgs(["--network", "host", "-net-raw=true", "--host-uds", "create"])).toEqual(
      { network: "host", netRaw: true, hostUds: "create" }
    )
    expect(Gvisor.readArgs(["-network=sandbox", "--net-raw=false", "-host-uds=open"])).toEqual({
      network: "sandbox",
      netRaw: false,
      hostUds: "open"
    })
    expect(Gvisor.readArgs(["--network=host", "--network=none"]).network).toBe("none")
    expect(Gvisor.readArgs(["--host-uds=all", "--host-uds=none"]).hostUds).toBe("none")
    // The deprecated boolean form means all.
    expect(Gvisor.readArgs(["--fsgofer-host-uds"]).hostUds).toBe("all")
    expect(Gvisor.readArgs(["--fsgofer-host-uds=false"]).hostUds).toBe("none")
    expect(Gvisor.readArgs([])).toEqual({ network: undefined, netRaw: false, hostUds: undefined })
  })
})

describe("Gvisor.hostSocketAllowed", () => {
  const registered = (...hostUds: ReadonlyArray<string>) => ({
    path: "runsc",
    runtimeArgs: ["--net-raw", "--network=host", ...hostUds]
  })

  it("is true for --host-uds=create and all (sockets made inside are the host's), false for none, open, absent or unregistered", () => {
    expect(Gvisor.hostSocketAllowed(registered("--host-uds=create"))).toBe(true)
    expect(Gvisor.hostSocketAllowed(registered("--host-uds", "all"))).toBe(true)
    expect(Gvisor.hostSocketAllowed(registered("--fsgofer-host-uds"))).toBe(true)
    expect(Gvisor.hostSocketAllowed(registered("--host-uds=open"))).toBe(false)
    expect(Gvisor.hostSocketAllowed(registered("--host-uds=none"))).toBe(false)
    expect(Gvisor.hostSocketAllowed(registered())).toBe(false)
    expect(Gvisor.hostSocketAllowed({ path: "runsc", runtimeArgs: null })).toBe(false)
    expect(Gvisor.hostSocketAllowed(undefined)).toBe(false)
  })

  it("is what the recommended registration gives", () => {
    expect(Gvisor.hostSocketAllowed({ path: "runsc", runtimeArgs: Gvisor.RUNTIME_ARGS })).toBe(true)
    expect(Gvisor.DAEMON_JSON).toContain(JSON.stringify(Gvisor.RUNTIME_ARGS).replace(/,/g, ", "))
  })
})

describe("Gvisor.releaseOf", () => {
  it("finds the release date in Debian's and upstream's version lines, and nothing else", () => {
    expect(Gvisor.releaseOf("runsc version 0.0~20240729.0")).toBe(20240729)
    expect(Gvisor.releaseOf("runsc version release-20221219.0")).toBe(20221219)
    expect(Gvisor.releaseOf("runsc version 1.2.3")).toBeUndefined()
  })
})

describe("Gvisor.check", () => {
  const good = { path: "runsc", runtimeArgs: ["--net-raw", "--network=host"] }
  const problemOf = (...args: Parameters<typeof Gvisor.check>) =>
    Option.map(Gvisor.check(...args), (error) => error.problem).pipe(Option.getOrUndefined)

  it("without a host socket asked for, a registration without --host-uds passes (Docker inside by exec)", () => {
    expect(problemOf(good, undefined, {})).toBeUndefined()
    expect(problemOf(good, undefined, { hostSocket: false })).toBeUndefined()
  })

  it("a host socket asked for (dockerVia: host-socket) without --host-uds=create or all: no-host-uds, naming the flag and dockerVia exec", () => {
    expect(problemOf(good, undefined, { hostSocket: true })).toBe("no-host-uds")
    expect(
      problemOf({ ...good, runtimeArgs: [...good.runtimeArgs, "--host-uds=open"] }, undefined, {
        hostSocket: true
      })
    ).toBe("no-host-uds")
    for (const hostUds of ["create", "all"])
      expect(
        problemOf(
          { ...good, runtimeArgs: [...good.runtimeArgs, `--host-uds=${hostUds}`] },
          undefined,
          {
            hostSocket: true
          }
        )
      ).toBeUndefined()
    const error = Option.getOrThrow(Gvisor.check(good, undefined, { hostSocket: true }))
    expect(error).toMatchObject({
      _tag: "RunscUnsuitable",
      problem: "no-host-uds",
      runtimeArgs: good.runtimeArgs
    })
    expect(error.message).toContain("--host-uds=create")
    expect(error.message).toContain('dockerVia: "exec"')
    expect(error.fix).toContain(Gvisor.DAEMON_JSON)
    // A more basic problem is named first.
    expect(
      problemOf({ path: "runsc", runtimeArgs: ["--net-raw"] }, undefined, { hostSocket: true })
    ).toBe("network-not-host")
  })

  it("passes the documented registration with a release from 20240729 on", () => {
    expect(problemOf(good, "runsc version 0.0~20240729.0")).toBeUndefined()
    expect(problemOf(good, "runsc version release-20250101.0")).toBeUndefined()
    // A version that cannot be read is not held against it.
    expect(problemOf(good, undefined)).toBeUndefined()
  })

  it("names each problem, most basic first, with the daemon.json fix in the message", () => {
    expect(problemOf(undefined)).toBe("not-registered")
    expect(problemOf({ path: "runsc", runtimeArgs: null })).toBe("network-not-host")
    expect(problemOf({ path: "runsc", runtimeArgs: ["--network=host"] })).toBe("no-net-raw")
    expect(problemOf(good, "runsc version 0.0~20221219.0")).toBe("too-old")
    const error = Option.getOrThrow(Gvisor.check({ path: "/x/runsc", runtimeArgs: ["--net-raw"] }))
    expect(error).toMatchObject({
      _tag: "RunscUnsuitable",
      problem: "network-not-host",
      path: "/x/runsc",
      runtimeArgs: ["--net-raw"]
    })
    expect(error.message).toContain("cannot run with network enabled in root network namespace")
    expect(error.message).toContain(Gvisor.DAEMON_JSON)
    const old = Option.getOrThrow(Gvisor.check(good, "runsc version 0.0~20221219.0"))
    expect(old.message).toContain("apt-get install -t bookworm-backports runsc")
    expect(old.version).toBe("runsc version 0.0~20221219.0")
  })
})
