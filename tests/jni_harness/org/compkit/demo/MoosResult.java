package org.compkit.demo;

// Host mirror of android_demo's Kotlin MoosResult: same constructor, which the JNI glue calls.
public class MoosResult {
    public final String compressedText;
    public final String[] words;
    public final boolean[] kept;
    public final int originTokens;
    public final int compressedTokens;
    public final int windows;
    public final String[] stageNames;
    public final double[] stageMs;

    public MoosResult(String compressedText, String[] words, boolean[] kept, int originTokens, int compressedTokens,
                      int windows, String[] stageNames, double[] stageMs) {
        this.compressedText = compressedText;
        this.words = words;
        this.kept = kept;
        this.originTokens = originTokens;
        this.compressedTokens = compressedTokens;
        this.windows = windows;
        this.stageNames = stageNames;
        this.stageMs = stageMs;
    }
}
