import SwiftUI

private let samplePrompt = "Item 15: the city council approved 2.4 million dollars for the Riverside bridge repair. "
    + "Council member Alvarez said that, as discussed last week, the work must finish before the flood season in March."

/// Screen one: a prompt in, the compressed prompt out with dropped words struck through, token counts and
/// the time of every stage of the native pipeline.
struct PromptView: View {
    @State private var prompt = samplePrompt
    @State private var rate = 0.33
    @State private var runtime: ModelRuntime = .coreML
    @State private var result: MoosResult?
    @State private var error: String?
    @State private var busy = false
    @State private var compressor: (runtime: ModelRuntime, value: MoosCompressor)?

    private let rates = [0.25, 0.33, 0.5, 0.75]

    var body: some View {
        NavigationStack {
            Form {
                Section("Prompt") {
                    TextEditor(text: $prompt).frame(minHeight: 140)
                }
                Section("Settings") {
                    Picker("Keep", selection: $rate) {
                        ForEach(rates, id: \.self) { Text("\(Int($0 * 100))%").tag($0) }
                    }
                    .pickerStyle(.segmented)
                    Picker("Runtime", selection: $runtime) {
                        ForEach(ModelRuntime.allCases) { Text($0.rawValue).tag($0) }
                    }
                    Button(busy ? "Compressing..." : "Compress") { Task { await compress() } }
                        .disabled(busy || prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
                }
                if let error {
                    Section { Text(error).foregroundStyle(.red) }
                }
                if let r = result {
                    Section("Tokens \(r.originTokens) -> \(r.compressedTokens)") {
                        Text(struckThrough(r))
                    }
                    Section("Compressed prompt") { Text(r.text).textSelection(.enabled) }
                    Section("Latency per stage") {
                        ForEach(r.stages, id: \.name) { stage in
                            LabeledContent(stage.name, value: String(format: "%.2f ms", stage.ms))
                        }
                    }
                }
            }
            .navigationTitle("MOOSComp")
        }
    }

    /// Every word of the prompt, the dropped ones struck through and greyed.
    private func struckThrough(_ r: MoosResult) -> AttributedString {
        var out = AttributedString()
        for (i, word) in r.words.enumerated() {
            var piece = AttributedString((i > 0 ? " " : "") + word)
            if !r.kept[i] {
                piece.strikethroughStyle = .single
                piece.foregroundColor = .gray
            }
            out += piece
        }
        return out
    }

    @MainActor
    private func compress() async {
        busy = true
        defer { busy = false }
        do {
            if compressor?.runtime != runtime {
                let artifacts = try Artifacts.bundled()
                let model = try await ModelFactory.moos(artifacts, runtime)
                compressor = (runtime, try MoosCompressor(tokenizerDir: artifacts.tokenizerDir, model: model, hasOutlier: artifacts.hasOutlier))
            }
            let text = prompt, rate = rate
            let c = compressor!.value
            result = try await Task.detached(priority: .userInitiated) { try c.compress(text, rate: rate) }.value
            error = nil
        } catch {
            self.error = error.localizedDescription
        }
    }
}
