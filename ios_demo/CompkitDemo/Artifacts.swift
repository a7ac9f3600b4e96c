import Foundation

/// The export.build --target ios folder copied into the app (ios_demo/copy_artifacts.py -> Artifacts/).
struct Manifest: Decodable {
    struct Model: Decodable {
        let tokenizerDir: String?
        let outlier: String?
        let buckets: [Int]?
        let config: EvoConfig?

        enum CodingKeys: String, CodingKey {
            case tokenizerDir = "tokenizer_dir", outlier, buckets, config
        }
    }

    struct EvoConfig: Decodable {
        let visualDim: Int
        let textDim: Int
        let maxVisualTokens: Int
        let maxTextTokens: Int

        enum CodingKeys: String, CodingKey {
            case visualDim = "visual_dim", textDim = "text_dim"
            case maxVisualTokens = "max_visual_tokens", maxTextTokens = "max_text_tokens"
        }
    }

    struct Artifact: Decodable {
        let file: String
        let model: String
        let backend: String
        let quant: String
        let bucket: Int?
        let enabled: Bool
        let outputNames: [String]?

        enum CodingKeys: String, CodingKey {
            case file, model, backend, quant, bucket, enabled, outputNames = "output_names"
        }
    }

    let target: String
    let models: [String: Model]
    let artifacts: [Artifact]
}

/// Which runtime makes the model call: Core ML directly, or ExecuTorch with its Core ML delegate.
enum ModelRuntime: String, CaseIterable, Identifiable {
    case coreML = "Core ML"
    case executorch = "ExecuTorch (Core ML delegate)"

    var id: String { rawValue }
    var backend: String { self == .coreML ? "coreml" : "etcoreml" }
}

struct Artifacts {
    static let quantPreference = ["fp16", "int8w", "pal4", "fp32"]

    let dir: URL
    let manifest: Manifest

    static func bundled(_ bundle: Bundle = .main) throws -> Artifacts {
        guard let dir = bundle.url(forResource: "Artifacts", withExtension: nil),
              FileManager.default.fileExists(atPath: dir.appendingPathComponent("manifest.json").path) else {
            throw CompkitError(message: "no artifacts bundled: run `python ios_demo/copy_artifacts.py BUILD_DIR` and rebuild (docs/DEMOS.md)")
        }
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
        return Artifacts(dir: dir, manifest: manifest)
    }

    var tokenizerDir: URL { dir.appendingPathComponent(manifest.models["moos"]?.tokenizerDir ?? "moos_tokenizer") }
    /// Whether the MOOSComp artifacts return outlier_z beside keep_prob (the representation outlier).
    var hasOutlier: Bool {
        manifest.artifacts.contains { $0.model == "moos" && $0.enabled && ($0.outputNames ?? []).contains("outlier_z") }
    }
    var evoConfig: Manifest.EvoConfig? { manifest.models["evo"]?.config }

    private func enabled(_ model: String, _ runtime: ModelRuntime) -> [Manifest.Artifact] {
        manifest.artifacts.filter { $0.model == model && $0.backend == runtime.backend && $0.enabled }
    }

    private func preferredQuant(_ artifacts: [Manifest.Artifact]) -> String? {
        Self.quantPreference.first { q in artifacts.contains { $0.quant == q } } ?? artifacts.first?.quant
    }

    /// bucket -> model file, for one quant (the first of quantPreference that was exported).
    func moosFiles(_ runtime: ModelRuntime) throws -> [Int: URL] {
        let all = enabled("moos", runtime)
        guard let quant = preferredQuant(all) else {
            throw CompkitError(message: "manifest.json lists no enabled MOOSComp \(runtime.backend) artifact: re-export with --target ios")
        }
        var files: [Int: URL] = [:]
        for a in all where a.quant == quant {
            files[a.bucket ?? 512] = dir.appendingPathComponent(a.file)
        }
        return files
    }

    func evoFile(_ runtime: ModelRuntime) throws -> URL {
        let all = enabled("evo", runtime)
        guard let quant = preferredQuant(all), let a = all.first(where: { $0.quant == quant }) else {
            throw CompkitError(message: "manifest.json lists no enabled EvoComp \(runtime.backend) artifact: re-export with --target ios")
        }
        return dir.appendingPathComponent(a.file)
    }
}
