package org.compkit.demo

import androidx.compose.foundation.Canvas
import androidx.compose.foundation.Image
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.aspectRatio
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableFloatStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.geometry.Offset
import androidx.compose.ui.geometry.Size
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.graphics.drawscope.Stroke
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.unit.dp
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext

private val RATIOS = listOf(2f, 3f, 4f)

/** What one EvoComp run produced: which patches survive, and what each step cost. */
private class EvoRun(val kept: Set<Int>, val keptCount: Int, val total: Int, val forwardMs: Double, val selectMs: Double)

@Composable
fun VisionScreen(artifacts: Artifacts) {
    val context = LocalContext.current
    var ratio by remember { mutableFloatStateOf(3f) }
    var outcome by remember { mutableStateOf<Result<EvoRun>?>(null) }
    val sample = remember { runCatching { BundledEvoSample.load(context.assets).also { it.sample.checkFits(artifacts.evoConfig) } } }
    val model = remember { lazy { ExecuTorchEvo(artifacts.evoPte()) } }
    // The model scores the tokens once; each ratio is only a different top-k of the same scores.
    val scores = remember { mutableStateOf<Pair<FloatArray, Double>?>(null) }
    DisposableEffect(Unit) { onDispose { if (model.isInitialized()) model.value.close() } }

    LaunchedEffect(ratio) {
        outcome = withContext(Dispatchers.Default) {
            runCatching {
                val s = sample.getOrThrow().sample
                val (logits, forwardMs) = scores.value ?: run {
                    val t0 = System.nanoTime()
                    val out = model.value.scores(s)
                    (out to (System.nanoTime() - t0) / 1e6).also { scores.value = it }
                }
                val t0 = System.nanoTime()
                val kept = CompkitNative.evoSelect(logits, 0, ratio.toDouble())
                EvoRun(kept.toSet(), kept.size, logits.size, forwardMs, (System.nanoTime() - t0) / 1e6)
            }
        }
    }

    Column(Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(12.dp)) {
        sample.onSuccess { Text("Q: ${it.sample.question}", style = MaterialTheme.typography.titleMedium) }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            RATIOS.forEach { r -> FilterChip(selected = ratio == r, onClick = { ratio = r }, label = { Text("${r.toInt()}x") }) }
        }
        val s = sample.getOrNull()
        val r = outcome
        when {
            s == null -> Text(sample.exceptionOrNull()?.message ?: "no sample", color = MaterialTheme.colorScheme.error)
            r == null -> Text("Scoring visual tokens...")
            r.isFailure -> Text(r.exceptionOrNull()?.message ?: "failed", color = MaterialTheme.colorScheme.error)
            else -> {
                val ok = r.getOrThrow()
                PatchView(s, ok.kept)
                Text("Kept ${ok.keptCount} of ${ok.total} visual tokens (${ratio.toInt()}x)")
                Text("Forward %.1f ms, top-k %.3f ms".format(ok.forwardMs, ok.selectMs))
                Text("Visual tokens are precomputed for this image (no vision encoder in compkit).", style = MaterialTheme.typography.bodySmall)
            }
        }
    }
}

/** The image with dropped patches dimmed and kept patches outlined. */
@Composable
private fun PatchView(bundled: BundledEvoSample, kept: Set<Int>) {
    val sample = bundled.sample
    val bitmap = remember(bundled) { bundled.image.asImageBitmap() }
    Box(Modifier.fillMaxWidth().aspectRatio(sample.cols.toFloat() / sample.rows)) {
        Image(bitmap, contentDescription = sample.question, modifier = Modifier.fillMaxSize())
        Canvas(Modifier.fillMaxSize()) {
            val w = size.width / sample.cols
            val h = size.height / sample.rows
            for (i in 0 until sample.n) {
                val topLeft = Offset((i % sample.cols) * w, (i / sample.cols) * h)
                if (i in kept) {
                    drawRect(Color(0xFFFFEB3B), topLeft, Size(w, h), style = Stroke(width = 1.5f))
                } else {
                    drawRect(Color.Black.copy(alpha = 0.6f), topLeft, Size(w, h))
                }
            }
        }
    }
}
