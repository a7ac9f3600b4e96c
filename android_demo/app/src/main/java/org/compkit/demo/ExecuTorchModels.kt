package org.compkit.demo

import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/** MOOSComp's model call on ExecuTorch (XNNPACK .pte), one Module per sequence-length bucket. */
class ExecuTorchMoosScorer(ptePaths: Map<Int, String>) : MoosScorer, AutoCloseable {
    private val modules: Map<Int, Module> = ptePaths.mapValues { (_, path) -> Module.load(path) }

    fun buckets(): IntArray = modules.keys.sorted().toIntArray()

    override fun score(inputIds: IntArray, attentionMask: IntArray, keepProb: FloatArray, outlierZ: FloatArray) {
        val module = modules[inputIds.size]
            ?: throw CompkitException("no .pte for a window of ${inputIds.size} tokens; bundled buckets: ${modules.keys.sorted()}")
        val shape = longArrayOf(1, inputIds.size.toLong())
        val out = module.forward(EValue.from(Tensor.fromBlob(inputIds, shape)), EValue.from(Tensor.fromBlob(attentionMask, shape)))
        out[0].toTensor().dataAsFloatArray.copyInto(keepProb)
        if (out.size > 1) out[1].toTensor().dataAsFloatArray.copyInto(outlierZ)
    }

    override fun close() = modules.values.forEach { it.destroy() }
}

/** EvoComp's scorer on ExecuTorch: visual tokens + question embeddings in, one logit per visual token out. */
class ExecuTorchEvo(ptePath: String) : AutoCloseable {
    private val module = Module.load(ptePath)

    fun scores(sample: EvoSample): FloatArray = scores(
        sample.visualTokens, sample.n, sample.visualDim, sample.textEmbeds, sample.textTokens, sample.textDim, sample.textMask,
    )

    fun scores(visual: FloatArray, n: Int, dv: Int, text: FloatArray, t: Int, dt: Int, mask: IntArray): FloatArray {
        val out = module.forward(
            EValue.from(Tensor.fromBlob(visual, longArrayOf(1, n.toLong(), dv.toLong()))),
            EValue.from(Tensor.fromBlob(text, longArrayOf(1, t.toLong(), dt.toLong()))),
            EValue.from(Tensor.fromBlob(mask, longArrayOf(1, t.toLong()))),
        )
        return out[0].toTensor().dataAsFloatArray
    }

    override fun close() = module.destroy()
}
