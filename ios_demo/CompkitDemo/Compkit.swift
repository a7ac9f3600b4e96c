import CompkitCore
import Foundation

/// Every error the native core (or a model call) reports, with its one-line message.
struct CompkitError: LocalizedError {
    let message: String
    var errorDescription: String? { message }
}

/// One compression: the text, every word with its keep decision, token counts and per-stage times.
struct MoosResult {
    let text: String
    let words: [String]
    let kept: [Bool]
    let originTokens: Int
    let compressedTokens: Int
    let windows: Int
    let stages: [(name: String, ms: Double)]
}

private let errLen = 1024

/// Runs a C API call with an error buffer; a non-OK status becomes a CompkitError with the core's message.
private func check(_ call: (UnsafeMutablePointer<CChar>, Int) -> compkit_status) throws {
    var buffer = [CChar](repeating: 0, count: errLen)
    let status = buffer.withUnsafeMutableBufferPointer { call($0.baseAddress!, errLen) }
    if status != COMPKIT_OK {
        throw CompkitError(message: String(cString: buffer))
    }
}

/// The C callback the core calls once per window; `user` is the MoosCompressor's Box.
private let scoreWindow: compkit_score_fn = { user, ids, mask, length, keepProb, outlierZ, err, errLen in
    guard let user, let ids, let mask, let keepProb else { return 1 }
    let box = Unmanaged<MoosCompressor.Box>.fromOpaque(user).takeUnretainedValue()
    let n = Int(length)
    do {
        let out = try box.model.score(ids: Array(UnsafeBufferPointer(start: ids, count: n)),
                                      mask: Array(UnsafeBufferPointer(start: mask, count: n)))
        guard out.keep.count >= n else {
            throw CompkitError(message: "the model returned \(out.keep.count) keep probabilities for \(n) tokens")
        }
        keepProb.update(from: out.keep, count: n)
        if let outlierZ {
            guard let z = out.outlierZ, z.count >= n else {
                throw CompkitError(message: "the model has no outlier_z output but was declared with one")
            }
            outlierZ.update(from: z, count: n)
        }
        return 0
    } catch {
        if let err, errLen > 0 {
            _ = error.localizedDescription.withCString { strncpy(err, $0, errLen - 1) }
            err[errLen - 1] = 0
        }
        return 1
    }
}

/// MOOSComp on the native core, with the model call in Swift (Core ML or ExecuTorch).
/// Not thread-safe (the core's rule): one compressor per thread, or serialise calls as this class does.
final class MoosCompressor {
    final class Box {
        let model: MoosModel
        init(_ model: MoosModel) { self.model = model }
    }

    private let box: Box
    private var handle: OpaquePointer?
    private let lock = NSLock()

    init(tokenizerDir: URL, model: MoosModel, hasOutlier: Bool, outlierWeight: Double = 0) throws {
        box = Box(model)
        var config = compkit_moos_default_config()
        config.outlier_weight = outlierWeight
        let buckets = model.buckets.map { Int32($0) }
        let user = Unmanaged.passUnretained(box).toOpaque()  // self keeps box alive as long as the handle
        var out: OpaquePointer?
        try check { err, len in
            compkit_moos_create_callback(tokenizerDir.path, buckets, Int32(buckets.count), hasOutlier ? 1 : 0,
                                         scoreWindow, user, &config, &out, err, len)
        }
        handle = out
    }

    deinit { compkit_moos_destroy(handle) }

    /// LLMLingua-2's compress_prompt options that the core implements (targetToken > 0 overrides rate).
    func compress(_ text: String, rate: Double, targetToken: Int = -1, forceTokens: [String] = [],
                  forceReserveDigit: Bool = false, dropConsecutive: Bool = false, tokenToWordFirst: Bool = false) throws -> MoosResult {
        lock.lock()
        defer { lock.unlock() }
        var options = compkit_moos_default_options()
        options.rate = rate  // Double end to end: Float(0.33) widened picks another percentile than 0.33
        options.target_token = Int32(targetToken)
        options.force_reserve_digit = forceReserveDigit ? 1 : 0
        options.drop_consecutive = dropConsecutive ? 1 : 0
        options.token_to_word_first = tokenToWordFirst ? 1 : 0
        // C strings that live for the whole call
        let cStrings = forceTokens.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = cStrings.map { UnsafePointer($0) }
        var result: UnsafeMutablePointer<compkit_moos_result>?
        try pointers.withUnsafeBufferPointer { buffer in
            options.force_tokens = buffer.isEmpty ? nil : buffer.baseAddress
            options.n_force_tokens = Int32(buffer.count)
            try check { err, len in compkit_moos_compress(handle, text, &options, &result, err, len) }
        }
        guard let r = result?.pointee else { throw CompkitError(message: "the core returned no result") }
        defer { compkit_moos_result_free(result) }
        let n = Int(r.n_words)
        return MoosResult(
            text: String(cString: r.compressed),
            words: (0..<n).map { String(cString: r.words[$0]!) },
            kept: (0..<n).map { r.kept[$0] != 0 },
            originTokens: Int(r.origin_tokens),
            compressedTokens: Int(r.compressed_tokens),
            windows: Int(r.n_windows),
            stages: [("tokenize", r.tokenize_ms), ("forward", r.forward_ms), ("postprocess", r.postprocess_ms), ("total", r.total_ms)]
        )
    }
}

/// EvoComp's selection on the native core (compressors/evo.py keep_count and select).
enum Evo {
    static func keepCount(_ n: Int, ratio: Float) throws -> Int {
        var k: Int32 = 0
        try check { err, len in compkit_evo_keep_count(Int32(n), 0, Double(ratio), &k, err, len) }
        return Int(k)
    }

    /// Indices of the k highest scores (k > 0), else of round(n / ratio), in original order; ties keep the lower index.
    static func select(_ scores: [Float], k: Int = 0, ratio: Float = 0) throws -> [Int] {
        var indices = [Int32](repeating: 0, count: scores.count)
        var kept: Int32 = 0
        try check { err, len in
            compkit_evo_select(scores, Int32(scores.count), Int32(k), Double(ratio), &indices, &kept, err, len)
        }
        return indices.prefix(Int(kept)).map { Int($0) }
    }
}
