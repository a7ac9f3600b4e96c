import CoreML
import Foundation
#if canImport(ExecuTorch)
import ExecuTorch
#endif

/// MOOSComp's model call for one window padded to a bucket length: keep probabilities and, when the
/// model exports them, outlier z-scores. The native core calls it through its scoring callback.
protocol MoosModel: AnyObject {
    var buckets: [Int] { get }
    func score(ids: [Int32], mask: [Int32]) throws -> (keep: [Float], outlierZ: [Float]?)
}

/// EvoComp's scorer: one logit per visual token.
protocol EvoModel: AnyObject {
    func logits(_ sample: EvoSample) throws -> [Float]
}

enum CoreMLLoader {
    /// .mlpackage files ship uncompiled (their names vary per export); compile once and keep the result.
    static func load(_ package: URL) async throws -> MLModel {
        let caches = try FileManager.default.url(for: .cachesDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        let compiled = caches.appendingPathComponent(package.deletingPathExtension().lastPathComponent + ".mlmodelc")
        if !FileManager.default.fileExists(atPath: compiled.path) {
            let tmp = try await MLModel.compileModel(at: package)
            try FileManager.default.moveItem(at: tmp, to: compiled)
        }
        let config = MLModelConfiguration()
        config.computeUnits = .all
        return try MLModel(contentsOf: compiled, configuration: config)
    }

    static func multiArray<T: BinaryInteger>(_ values: [T], shape: [Int]) throws -> MLMultiArray {
        let a = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .int32)
        for (i, v) in values.enumerated() { a[i] = NSNumber(value: Int32(v)) }
        return a
    }

    static func multiArray(_ values: [Float], shape: [Int]) throws -> MLMultiArray {
        let a = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
        for (i, v) in values.enumerated() { a[i] = NSNumber(value: v) }
        return a
    }

    /// Reads any output precision (fp16 models may return Float16 arrays) as Float.
    static func floats(_ out: MLFeatureProvider, _ name: String) -> [Float]? {
        guard let a = out.featureValue(for: name)?.multiArrayValue else { return nil }
        return (0..<a.count).map { a[$0].floatValue }
    }
}

final class CoreMLMoosModel: MoosModel {
    private let models: [Int: MLModel]
    var buckets: [Int] { models.keys.sorted() }

    private init(models: [Int: MLModel]) { self.models = models }

    static func load(_ files: [Int: URL]) async throws -> CoreMLMoosModel {
        var models: [Int: MLModel] = [:]
        for (bucket, url) in files { models[bucket] = try await CoreMLLoader.load(url) }
        return CoreMLMoosModel(models: models)
    }

    func score(ids: [Int32], mask: [Int32]) throws -> (keep: [Float], outlierZ: [Float]?) {
        guard let model = models[ids.count] else {
            throw CompkitError(message: "no Core ML model for a window of \(ids.count) tokens; bundled buckets: \(buckets)")
        }
        let input = try MLDictionaryFeatureProvider(dictionary: [
            "input_ids": MLFeatureValue(multiArray: try CoreMLLoader.multiArray(ids, shape: [1, ids.count])),
            "attention_mask": MLFeatureValue(multiArray: try CoreMLLoader.multiArray(mask, shape: [1, mask.count])),
        ])
        let out = try model.prediction(from: input)
        guard let keep = CoreMLLoader.floats(out, "keep_prob") else {
            throw CompkitError(message: "the Core ML model has no keep_prob output: re-export it with export.build")
        }
        return (keep, CoreMLLoader.floats(out, "outlier_z"))
    }
}

final class CoreMLEvoModel: EvoModel {
    private let model: MLModel

    init(model: MLModel) { self.model = model }

    func logits(_ s: EvoSample) throws -> [Float] {
        let input = try MLDictionaryFeatureProvider(dictionary: [
            "visual_tokens": MLFeatureValue(multiArray: try CoreMLLoader.multiArray(s.visualTokens, shape: [1, s.n, s.visualDim])),
            "text_embeds": MLFeatureValue(multiArray: try CoreMLLoader.multiArray(s.textEmbeds, shape: [1, s.textTokens, s.textDim])),
            "text_mask": MLFeatureValue(multiArray: try CoreMLLoader.multiArray(s.textMask, shape: [1, s.textTokens])),
        ])
        guard let logits = CoreMLLoader.floats(try model.prediction(from: input), "keep_logits") else {
            throw CompkitError(message: "the Core ML model has no keep_logits output: re-export it with export.build")
        }
        return logits
    }
}

#if canImport(ExecuTorch)
/// The same call through ExecuTorch's runtime and its Core ML delegate (the `etcoreml` .pte files).
final class ExecuTorchMoosModel: MoosModel {
    private let modules: [Int: Module]
    var buckets: [Int] { modules.keys.sorted() }

    init(_ files: [Int: URL]) throws {
        var modules: [Int: Module] = [:]
        for (bucket, url) in files {
            let module = Module(filePath: url.path)
            try module.load("forward")
            modules[bucket] = module
        }
        self.modules = modules
    }

    func score(ids: [Int32], mask: [Int32]) throws -> (keep: [Float], outlierZ: [Float]?) {
        guard let module = modules[ids.count] else {
            throw CompkitError(message: "no .pte for a window of \(ids.count) tokens; bundled buckets: \(buckets)")
        }
        let inputs: [ValueConvertible] = [Tensor<Int32>(ids, shape: [1, ids.count]), Tensor<Int32>(mask, shape: [1, mask.count])]
        let outputs = try module.forward(inputs)
        guard let keep: Tensor<Float> = outputs.first?.tensor() else {
            throw CompkitError(message: "the .pte's first output is not a float tensor (keep_prob)")
        }
        let z: Tensor<Float>? = outputs.count > 1 ? outputs[1].tensor() : nil
        return (keep.scalars(), z?.scalars())
    }
}

final class ExecuTorchEvoModel: EvoModel {
    private let module: Module

    init(_ file: URL) throws {
        module = Module(filePath: file.path)
        try module.load("forward")
    }

    func logits(_ s: EvoSample) throws -> [Float] {
        let inputs: [ValueConvertible] = [
            Tensor<Float>(s.visualTokens, shape: [1, s.n, s.visualDim]),
            Tensor<Float>(s.textEmbeds, shape: [1, s.textTokens, s.textDim]),
            Tensor<Int32>(s.textMask, shape: [1, s.textTokens]),
        ]
        guard let logits: Tensor<Float> = try module.forward(inputs).first?.tensor() else {
            throw CompkitError(message: "the .pte's output is not a float tensor (keep_logits)")
        }
        return logits.scalars()
    }
}
#endif

enum ModelFactory {
    static func moos(_ artifacts: Artifacts, _ runtime: ModelRuntime) async throws -> MoosModel {
        let files = try artifacts.moosFiles(runtime)
        switch runtime {
        case .coreML:
            return try await CoreMLMoosModel.load(files)
        case .executorch:
            #if canImport(ExecuTorch)
            return try ExecuTorchMoosModel(files)
            #else
            throw CompkitError(message: "this build has no ExecuTorch package: add it in project.yml (docs/DEMOS.md)")
            #endif
        }
    }

    static func evo(_ artifacts: Artifacts, _ runtime: ModelRuntime) async throws -> EvoModel {
        let file = try artifacts.evoFile(runtime)
        switch runtime {
        case .coreML:
            return CoreMLEvoModel(model: try await CoreMLLoader.load(file))
        case .executorch:
            #if canImport(ExecuTorch)
            return try ExecuTorchEvoModel(file)
            #else
            throw CompkitError(message: "this build has no ExecuTorch package: add it in project.yml (docs/DEMOS.md)")
            #endif
        }
    }
}
