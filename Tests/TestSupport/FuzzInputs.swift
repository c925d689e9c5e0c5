import FuzzSupport
import Seeded

/// Random fuzz inputs, some biased towards the choices that matter.
public func randomFuzzInputs(count: Int, seed: UInt64) -> [[UInt8]] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { index in
        let length = Int.random(in: 0...(index % 4 == 0 ? 2000 : 400), using: &rng)
        if index % 3 == 0 {
            // Mostly opcodes that build state, so traces go deep.
            var bytes: [UInt8] = []
            while bytes.count < length {
                let roll = Int.random(in: 0..<10, using: &rng)
                switch roll {
                case 0: bytes.append(UInt8.random(in: FuzzFormat.Opcode.connect, using: &rng))
                case 1: bytes.append(UInt8.random(in: FuzzFormat.Opcode.grant, using: &rng))
                default: bytes.append(UInt8.random(in: 0...255, using: &rng))
                }
            }
            return bytes
        }
        return (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }
}
