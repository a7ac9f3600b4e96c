package org.compkit.demo

import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.heightIn
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableDoubleStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.text.AnnotatedString
import androidx.compose.ui.text.SpanStyle
import androidx.compose.ui.text.buildAnnotatedString
import androidx.compose.ui.text.style.TextDecoration
import androidx.compose.ui.text.withStyle
import androidx.compose.ui.unit.dp
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

private const val SAMPLE_PROMPT = "Item 15: the city council approved 2.4 million dollars for the Riverside bridge repair. " +
    "Council member Alvarez said that, as discussed last week, the work must finish before the flood season in March."
private val RATES = listOf(0.25, 0.33, 0.5, 0.75)

@Composable
fun PromptScreen(artifacts: Artifacts) {
    var prompt by remember { mutableStateOf(SAMPLE_PROMPT) }
    var rate by remember { mutableDoubleStateOf(0.33) }
    var result by remember { mutableStateOf<Result<MoosResult>?>(null) }
    var busy by remember { mutableStateOf(false) }
    val scope = rememberCoroutineScope()
    // Built once per screen: loading the .pte files is the slow part, not compressing.
    val compressor = remember {
        lazy {
            val scorer = ExecuTorchMoosScorer(artifacts.moosPtes())
            scorer to MoosCompressor(artifacts.tokenizerDir.path, scorer.buckets(), artifacts.hasOutlier, scorer)
        }
    }
    DisposableEffect(Unit) {
        onDispose { if (compressor.isInitialized()) compressor.value.let { it.second.close(); it.first.close() } }
    }

    Column(Modifier.padding(16.dp).verticalScroll(rememberScrollState()), verticalArrangement = Arrangement.spacedBy(12.dp)) {
        OutlinedTextField(prompt, { prompt = it }, Modifier.fillMaxWidth().heightIn(min = 140.dp), label = { Text("Prompt") })
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Text("Keep", Modifier.padding(top = 14.dp))
            RATES.forEach { r -> FilterChip(selected = rate == r, onClick = { rate = r }, label = { Text("${(r * 100).toInt()}%") }) }
        }
        Button(enabled = !busy && prompt.isNotBlank(), onClick = {
            busy = true
            scope.launch {
                result = withContext(Dispatchers.Default) { runCatching { compressor.value.second.compress(prompt, rate) } }
                busy = false
            }
        }) { Text(if (busy) "Compressing..." else "Compress") }
        result?.fold(onSuccess = { ResultView(it) }, onFailure = {
            Text(it.message ?: it.toString(), color = MaterialTheme.colorScheme.error)
        })
    }
}

@Composable
private fun ResultView(r: MoosResult) {
    Text("Tokens: ${r.originTokens} -> ${r.compressedTokens}" +
        if (r.compressedTokens > 0) "  (%.1fx)".format(r.originTokens.toFloat() / r.compressedTokens) else "")
    Text(struckThrough(r), style = MaterialTheme.typography.bodyLarge)
    Text("Compressed prompt", style = MaterialTheme.typography.titleSmall)
    Text(r.compressedText)
    Text("Latency per stage", style = MaterialTheme.typography.titleSmall)
    r.stageNames.zip(r.stageMs.toList()).forEach { (name, ms) -> Text("%-12s %8.2f ms".format(name, ms)) }
}

/** Every word of the prompt, the dropped ones struck through and greyed. */
private fun struckThrough(r: MoosResult): AnnotatedString = buildAnnotatedString {
    r.words.forEachIndexed { i, word ->
        if (i > 0) append(' ')
        if (r.kept[i]) append(word) else withStyle(SpanStyle(textDecoration = TextDecoration.LineThrough, color = Color.Gray)) { append(word) }
    }
}
