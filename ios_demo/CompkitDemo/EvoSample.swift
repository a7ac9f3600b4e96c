import Foundation
import UIKit

/// The bundled EvoComp sample (android_demo/tools/make_evo_sample.py writes it; both apps bundle the same
/// folder): an image, its precomputed visual tokens and a question's text embeddings. compkit has no vision
/// encoder, so the tokens ship with the app instead of being computed from the pixels.
struct EvoSample {
    let image: UIImage
    let question: String
    let rows: Int
    let cols: Int
    let visualDim: Int
    let textTokens: Int
    let textDim: Int
    let visualTokens: [Float]
    let textEmbeds: [Float]
    let textMask: [Int32]

    var n: Int { rows * cols }

    private struct Meta: Decodable {
        let image: String
        let question: String
        let grid: [Int]
        let visual_dim: Int
        let text_tokens: Int
        let text_dim: Int
    }

    static func load(_ bundle: Bundle = .main) throws -> EvoSample {
        guard let dir = bundle.url(forResource: "evo_sample", withExtension: nil) else {
            throw CompkitError(message: "evo_sample folder missing from the app bundle: regenerate the Xcode project (xcodegen generate)")
        }
        let meta = try JSONDecoder().decode(Meta.self, from: Data(contentsOf: dir.appendingPathComponent("evo_sample.json")))
        let rows = meta.grid[0], cols = meta.grid[1]
        let bytes = try Data(contentsOf: dir.appendingPathComponent("evo_sample.bin"))
        let nv = rows * cols * meta.visual_dim, nt = meta.text_tokens * meta.text_dim
        guard bytes.count == 4 * (nv + nt + meta.text_tokens) else {
            throw CompkitError(message: "evo_sample.bin has \(bytes.count) bytes, its json says \(4 * (nv + nt + meta.text_tokens)): regenerate both")
        }
        // Little-endian float32 / int32, which is every Apple CPU's native order.
        let floats: [Float] = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self).prefix(nv + nt)) }
        let mask: [Int32] = bytes.withUnsafeBytes { Array($0.bindMemory(to: Int32.self).suffix(meta.text_tokens)) }
        guard let image = UIImage(contentsOfFile: dir.appendingPathComponent(meta.image).path) else {
            throw CompkitError(message: "cannot read \(meta.image) in evo_sample")
        }
        return EvoSample(image: image, question: meta.question, rows: rows, cols: cols, visualDim: meta.visual_dim,
                         textTokens: meta.text_tokens, textDim: meta.text_dim,
                         visualTokens: Array(floats[0..<nv]), textEmbeds: Array(floats[nv...]), textMask: mask)
    }

    /// A sample made for another model width cannot run: say which sizes differ and how to regenerate.
    func check(fits config: Manifest.EvoConfig?) throws {
        guard let c = config else { return }
        if c.visualDim != visualDim || c.textDim != textDim || c.maxVisualTokens != n || c.maxTextTokens != textTokens {
            throw CompkitError(message: "evo_sample does not fit the EvoComp model: rerun make_evo_sample.py --visual-dim \(c.visualDim) --text-dim \(c.textDim) --text-tokens \(c.maxTextTokens)")
        }
    }
}
