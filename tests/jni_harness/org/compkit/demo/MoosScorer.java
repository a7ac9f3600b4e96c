package org.compkit.demo;

// Host mirror of android_demo's Kotlin `fun interface MoosScorer`.
public interface MoosScorer {
    void score(int[] inputIds, int[] attentionMask, float[] keepProb, float[] outlierZ);
}
