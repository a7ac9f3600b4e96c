import XCTest
@testable import CompkitDemo

/// The shared test vectors (vectors.json, written by export.build and bundled by copy_artifacts.py) on the
/// phone or simulator: the core fed Python's keep probabilities must give Python's compressed texts exactly;
/// the bundled Core ML / ExecuTorch models must meet runtime_py/parity.py's thresholds; EvoComp's top-k must
/// give Python's indices exactly.
final class SharedVectorsTests: XCTestCase {
    private struct Vectors: Decodable {
        struct Window: Decodable {
            let ids: [Int32]
            let keep_prob: [Float]
            let outlier_z: [Float]?
        }

        struct Case: Decodable {
            let text: Int
            let outlier_weight: Double
            let rate: Double
            let target_token: Int
            let force_tokens: [String]
            let force_reserve_digit: Bool
            let drop_consecutive: Bool
            let token_to_word: String
            let compressed: String
            let origin_tokens: Int
            let compressed_tokens: Int

            var plain: Bool {
                outlier_weight == 0 && force_tokens.isEmpty && target_token < 0 && !force_reserve_digit && token_to_word == "mean"
            }
        }

        struct Select: Decodable {
            let scores: [Float]
            let k: Int?
            let ratio: Double?
            let kept: [Int]
        }

        struct Evo: Decodable {
            let select: [Select]
        }

        let texts: [String]
        let windows: [Window]
        let compress: [Case]
        let evo: Evo
    }

    /// Replays Python's outputs by unpadded ids; with a real model, runs it and records the distance.
    private final class Replay: MoosModel {
        private var table: [[Int32]: Vectors.Window] = [:]
        private let model: MoosModel?
        let buckets: [Int]
        var maxAbs: Float = 0

        init(_ windows: [Vectors.Window], buckets: [Int], model: MoosModel? = nil) {
            for w in windows { table[w.ids] = w }
            self.buckets = buckets
            self.model = model
        }

        func score(ids: [Int32], mask: [Int32]) throws -> (keep: [Float], outlierZ: [Float]?) {
            let n = mask.filter { $0 == 1 }.count
            guard let w = table[Array(ids.prefix(n))] else { throw CompkitError(message: "window not in vectors.json") }
            func padded(_ a: [Float]) -> [Float] { a + [Float](repeating: 0, count: ids.count - a.count) }
            guard let model else { return (padded(w.keep_prob), w.outlier_z.map(padded)) }
            let out = try model.score(ids: ids, mask: mask)
            for i in 0..<n { maxAbs = max(maxAbs, abs(out.keep[i] - w.keep_prob[i])) }
            return out
        }
    }

    private var artifacts: Artifacts!
    private var vectors: Vectors!

    override func setUpWithError() throws {
        artifacts = try Artifacts.bundled()
        let url = artifacts.dir.appendingPathComponent("vectors.json")
        try XCTSkipUnless(FileManager.default.fileExists(atPath: url.path), "no vectors.json bundled: rerun export.build, then copy_artifacts.py")
        vectors = try JSONDecoder().decode(Vectors.self, from: Data(contentsOf: url))
    }

    private func compressAll(_ model: MoosModel, plainOnly: Bool, limit: Int = .max) throws -> [(Vectors.Case, MoosResult)] {
        let hasOutlier = vectors.windows.first?.outlier_z != nil
        var byWeight: [Double: MoosCompressor] = [:]
        var out: [(Vectors.Case, MoosResult)] = []
        for c in vectors.compress where !plainOnly || c.plain {
            if out.count >= limit { break }
            if byWeight[c.outlier_weight] == nil {
                byWeight[c.outlier_weight] = try MoosCompressor(tokenizerDir: artifacts.tokenizerDir, model: model,
                                                                 hasOutlier: hasOutlier, outlierWeight: c.outlier_weight)
            }
            let r = try byWeight[c.outlier_weight]!.compress(
                vectors.texts[c.text], rate: c.rate, targetToken: c.target_token, forceTokens: c.force_tokens,
                forceReserveDigit: c.force_reserve_digit, dropConsecutive: c.drop_consecutive,
                tokenToWordFirst: c.token_to_word == "first")
            out.append((c, r))
        }
        return out
    }

    func testCompressedTextsMatchPythonGivenItsProbabilities() throws {
        let buckets = try artifacts.moosFiles(.coreML).keys.sorted()
        let results = try compressAll(Replay(vectors.windows, buckets: buckets), plainOnly: false)
        let wrong = results.filter { c, r in
            r.text != c.compressed || r.originTokens != c.origin_tokens || r.compressedTokens != c.compressed_tokens
        }
        XCTAssertTrue(wrong.isEmpty, "\(wrong.count) of \(results.count) differ, first: \(String(describing: wrong.first?.0))")
    }

    func testModelsMeetParityThresholds() async throws {
        for runtime in ModelRuntime.allCases {
            guard let files = try? artifacts.moosFiles(runtime) else { continue }
            let buckets = files.keys.sorted()
            let reference = try compressAll(Replay(vectors.windows, buckets: buckets), plainOnly: true, limit: 60).map(\.1)
            let replay = Replay(vectors.windows, buckets: buckets, model: try await ModelFactory.moos(artifacts, runtime))
            let device = try compressAll(replay, plainOnly: true, limit: 60).map(\.1)
            var same = 0, total = 0
            for (a, b) in zip(reference, device) {
                XCTAssertEqual(a.words, b.words)
                same += zip(a.kept, b.kept).filter { $0 == $1 }.count
                total += a.kept.count
            }
            // Every iOS artifact is fp16 or lower (Core ML): parity.py's fp16/int8/4-bit threshold.
            let agreement = Double(same) / Double(max(total, 1))
            XCTAssertGreaterThanOrEqual(agreement, 0.98, "\(runtime.rawValue): kept-word agreement (keep_prob max-abs \(replay.maxAbs))")
        }
    }

    func testEvoSelectMatchesPython() throws {
        for (i, c) in vectors.evo.select.enumerated() {
            XCTAssertEqual(try Evo.select(c.scores, k: c.k ?? 0, ratio: Float(c.ratio ?? 0)), c.kept, "evo select case \(i)")
        }
    }
}
