package org.compkit.demo;

// Host mirror of android_demo's Kotlin `object CompkitNative` (@JvmStatic external funs): the same JNI
// symbols, so the same libcompkit_jni serves both. tests/test_demo_sources.py checks the two agree.
public final class CompkitNative {
    static {
        System.loadLibrary("compkit_jni");
    }

    private CompkitNative() {}

    public static native long moosCreate(String tokenizerDir, int[] buckets, boolean hasOutlier, double outlierWeight,
                                         MoosScorer scorer);

    public static native MoosResult moosCompress(long handle, String text, double rate, int targetToken,
                                                 String[] forceTokens, boolean forceReserveDigit, boolean dropConsecutive,
                                                 boolean tokenToWordFirst);

    public static native void moosDestroy(long handle);

    public static native int[] evoSelect(float[] scores, int k, double ratio);
}
