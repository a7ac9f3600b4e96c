package org.compkit.demo;

// Host mirror of android_demo's Kotlin class of the same name (the JNI glue throws it).
public class CompkitException extends RuntimeException {
    public CompkitException(String message) {
        super(message);
    }
}
