/**
 * The Engine's multiplexed stream decoder, whatever the chunk boundaries.
 */
import { describe, expect, it } from "@effect/vitest"
import { FrameDecoder } from "../src/internal/multiplexed.js"

const frame = (source: number, text: string): Uint8Array => {
  const payload = new TextEncoder().encode(text)
  const bytes = new Uint8Array(8 + payload.length)
  bytes[0] = source
  new DataView(bytes.buffer).setUint32(4, payload.length)
  bytes.set(payload, 8)
  return bytes
}

const join = (...parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const bytes = new Uint8Array(parts.reduce((n, part) => n + part.length, 0))
  let offset = 0
  for (const part of parts) {
    bytes.set(part, offset)
    offset += part.length
  }
  return bytes
}

const decodeAll = (chunks: ReadonlyArray<Uint8Array>) => {
  const decoder = new FrameDecoder()
  const frames = chunks.flatMap((chunk) => decoder.push(chunk))
  return {
    frames: frames.map((f) => [f.source, new TextDecoder().decode(f.payload)]),
    leftover: decoder.leftover
  }
}

describe("FrameDecoder", () => {
  const stream = join(frame(1, "out\n"), frame(2, "err\n"), frame(1, ""), frame(1, "é ok\n"))
  const expected = [
    ["stdout", "out\n"],
    ["stderr", "err\n"],
    ["stdout", ""],
    ["stdout", "é ok\n"]
  ]

  it("decodes frames from one chunk", () => {
    expect(decodeAll([stream])).toEqual({ frames: expected, leftover: 0 })
  })

  it("decodes frames cut at every possible byte", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(decodeAll([stream.subarray(0, cut), stream.subarray(cut)])).toEqual({
        frames: expected,
        leftover: 0
      })
    }
    expect(decodeAll(Array.from(stream, (byte) => Uint8Array.of(byte)))).toEqual({
      frames: expected,
      leftover: 0
    })
  })

  it("keeps an incomplete frame as leftover", () => {
    const cut = join(frame(1, "whole\n"), frame(2, "half").subarray(0, 10))
    expect(decodeAll([cut])).toEqual({ frames: [["stdout", "whole\n"]], leftover: 10 })
  })
})
