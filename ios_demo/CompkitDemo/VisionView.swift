import SwiftUI

/// Screen two: EvoComp on the bundled image; kept patches outlined, dropped ones dimmed, at 2x, 3x, 4x.
struct VisionView: View {
    @State private var ratio: Float = 3
    @State private var runtime: ModelRuntime = .coreML
    @State private var sample: EvoSample?
    @State private var logits: (runtime: ModelRuntime, values: [Float], forwardMs: Double)?
    @State private var kept: Set<Int> = []
    @State private var selectMs = 0.0
    @State private var error: String?

    var body: some View {
        NavigationStack {
            ScrollView {
                VStack(alignment: .leading, spacing: 12) {
                    if let s = sample {
                        Text("Q: \(s.question)").font(.headline)
                    }
                    Picker("Ratio", selection: $ratio) {
                        ForEach([Float(2), 3, 4], id: \.self) { Text("\(Int($0))x").tag($0) }
                    }
                    .pickerStyle(.segmented)
                    Picker("Runtime", selection: $runtime) {
                        ForEach(ModelRuntime.allCases) { Text($0.rawValue).tag($0) }
                    }
                    if let error {
                        Text(error).foregroundStyle(.red)
                    } else if let s = sample, let l = logits {
                        PatchOverlay(sample: s, kept: kept)
                        Text("Kept \(kept.count) of \(s.n) visual tokens (\(Int(ratio))x)")
                        Text(String(format: "Forward %.1f ms, top-k %.3f ms", l.forwardMs, selectMs))
                        Text("Visual tokens are precomputed for this image (no vision encoder in compkit).").font(.footnote)
                    } else {
                        ProgressView("Scoring visual tokens...")
                    }
                }
                .padding()
            }
            .navigationTitle("EvoComp")
        }
        .task(id: "\(ratio)-\(runtime.rawValue)") { await run() }
    }

    /// The model scores the tokens once per runtime; each ratio is only another top-k of the same scores.
    @MainActor
    private func run() async {
        do {
            let s = try sample ?? EvoSample.load()
            sample = s
            let artifacts = try Artifacts.bundled()
            try s.check(fits: artifacts.evoConfig)
            if logits?.runtime != runtime {
                let model = try await ModelFactory.evo(artifacts, runtime)
                let t0 = DispatchTime.now().uptimeNanoseconds
                let values = try model.logits(s)
                logits = (runtime, values, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let values = logits!.values
            kept = Set(try Evo.select(values, ratio: ratio))
            selectMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            error = nil
        } catch {
            self.error = error.localizedDescription
        }
    }
}

private struct PatchOverlay: View {
    let sample: EvoSample
    let kept: Set<Int>

    var body: some View {
        Image(uiImage: sample.image)
            .resizable()
            .aspectRatio(CGFloat(sample.cols) / CGFloat(sample.rows), contentMode: .fit)
            .overlay {
                Canvas { context, size in
                    let w = size.width / CGFloat(sample.cols), h = size.height / CGFloat(sample.rows)
                    for i in 0..<sample.n {
                        let rect = CGRect(x: CGFloat(i % sample.cols) * w, y: CGFloat(i / sample.cols) * h, width: w, height: h)
                        if kept.contains(i) {
                            context.stroke(Path(rect), with: .color(.yellow), lineWidth: 1)
                        } else {
                            context.fill(Path(rect), with: .color(.black.opacity(0.6)))
                        }
                    }
                }
            }
    }
}
