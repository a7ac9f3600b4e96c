// JNI glue between org.compkit.demo.CompkitNative (Kotlin) and the native core's C API (compkit.h).
// The model call stays in Kotlin (ExecuTorch's Android AAR): the core calls back into a MoosScorer.
// Every core error becomes an org.compkit.demo.CompkitException with the core's one-line message.
#include <jni.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "compkit.h"

namespace {

JavaVM* g_vm = nullptr;

void throw_compkit(JNIEnv* env, const std::string& message) {
  if (env->ExceptionCheck()) return;  // a pending Java exception already says more
  jclass cls = env->FindClass("org/compkit/demo/CompkitException");
  if (cls != nullptr) env->ThrowNew(cls, message.c_str());
}

// Java strings are modified UTF-8 (surrogate pairs encoded separately); the core wants real UTF-8, so go
// through String.getBytes("UTF-8") rather than GetStringUTFChars, or emoji would reach it mangled.
bool utf8(JNIEnv* env, jstring s, std::string* out) {
  if (s == nullptr) {
    throw_compkit(env, "text is null: pass a string");
    return false;
  }
  jclass string_cls = env->GetObjectClass(s);
  jmethodID get_bytes = env->GetMethodID(string_cls, "getBytes", "(Ljava/lang/String;)[B");
  jstring charset = env->NewStringUTF("UTF-8");
  auto bytes = static_cast<jbyteArray>(env->CallObjectMethod(s, get_bytes, charset));
  env->DeleteLocalRef(charset);
  env->DeleteLocalRef(string_cls);
  if (env->ExceptionCheck() || bytes == nullptr) return false;
  jsize n = env->GetArrayLength(bytes);
  out->resize(static_cast<size_t>(n));
  if (n > 0) env->GetByteArrayRegion(bytes, 0, n, reinterpret_cast<jbyte*>(&(*out)[0]));
  env->DeleteLocalRef(bytes);
  return true;
}

jstring java_string(JNIEnv* env, const char* utf8_text) {
  // new String(bytes, "UTF-8"): NewStringUTF would reject 4-byte sequences on some VMs.
  size_t n = std::strlen(utf8_text);
  jbyteArray bytes = env->NewByteArray(static_cast<jsize>(n));
  if (bytes == nullptr) return nullptr;
  env->SetByteArrayRegion(bytes, 0, static_cast<jsize>(n), reinterpret_cast<const jbyte*>(utf8_text));
  jclass string_cls = env->FindClass("java/lang/String");
  jmethodID ctor = env->GetMethodID(string_cls, "<init>", "([BLjava/lang/String;)V");
  jstring charset = env->NewStringUTF("UTF-8");
  auto s = static_cast<jstring>(env->NewObject(string_cls, ctor, bytes, charset));
  env->DeleteLocalRef(charset);
  env->DeleteLocalRef(bytes);
  env->DeleteLocalRef(string_cls);
  return s;
}

// What the core's callback needs to reach the Kotlin scorer; owned by the handle the Kotlin side holds.
struct Handle {
  compkit_moos* moos = nullptr;
  jobject scorer = nullptr;  // global ref to a MoosScorer
  jmethodID score = nullptr;
};

// The core's one-line messages fit easily; a longer one is truncated, never overflowed.
struct ErrBuf {
  char text[1024] = {0};
};

JNIEnv* current_env() {
  JNIEnv* env = nullptr;
  if (g_vm == nullptr || g_vm->GetEnv(reinterpret_cast<void**>(&env), JNI_VERSION_1_6) != JNI_OK) return nullptr;
  return env;
}

std::string describe_and_clear(JNIEnv* env) {
  jthrowable t = env->ExceptionOccurred();
  env->ExceptionClear();
  if (t == nullptr) return "unknown Java exception";
  jclass cls = env->GetObjectClass(t);
  jmethodID to_string = env->GetMethodID(cls, "toString", "()Ljava/lang/String;");
  auto s = static_cast<jstring>(env->CallObjectMethod(t, to_string));
  std::string out = "scorer threw";
  if (!env->ExceptionCheck() && s != nullptr) {
    const char* c = env->GetStringUTFChars(s, nullptr);
    out = std::string("scorer threw ") + c;
    env->ReleaseStringUTFChars(s, c);
  }
  env->ExceptionClear();
  return out;
}

// The core calls this once per window, on the thread that called moosCompress (JNI attached).
int score_window(void* user, const int32_t* input_ids, const int32_t* attention_mask, int32_t seq_len,
                 float* keep_prob, float* outlier_z, char* err, size_t err_len) {
  auto* h = static_cast<Handle*>(user);
  JNIEnv* env = current_env();
  if (env == nullptr) {
    std::snprintf(err, err_len, "scorer called on a thread without a JVM");
    return 1;
  }
  jintArray ids = env->NewIntArray(seq_len);
  jintArray mask = env->NewIntArray(seq_len);
  jfloatArray keep = env->NewFloatArray(seq_len);
  jfloatArray z = env->NewFloatArray(seq_len);
  int rc = 0;
  if (ids == nullptr || mask == nullptr || keep == nullptr || z == nullptr) {
    std::snprintf(err, err_len, "%s", describe_and_clear(env).c_str());
    rc = 1;
  } else {
    env->SetIntArrayRegion(ids, 0, seq_len, input_ids);
    env->SetIntArrayRegion(mask, 0, seq_len, attention_mask);
    env->CallVoidMethod(h->scorer, h->score, ids, mask, keep, z);
    if (env->ExceptionCheck()) {
      std::snprintf(err, err_len, "%s", describe_and_clear(env).c_str());
      rc = 1;
    } else {
      env->GetFloatArrayRegion(keep, 0, seq_len, keep_prob);
      if (outlier_z != nullptr) env->GetFloatArrayRegion(z, 0, seq_len, outlier_z);
    }
  }
  for (jobject o : {static_cast<jobject>(ids), static_cast<jobject>(mask), static_cast<jobject>(keep), static_cast<jobject>(z)})
    if (o != nullptr) env->DeleteLocalRef(o);
  return rc;
}

Handle* handle_of(JNIEnv* env, jlong handle) {
  auto* h = reinterpret_cast<Handle*>(handle);
  if (h == nullptr) throw_compkit(env, "compressor is closed");
  return h;
}

}  // namespace

extern "C" {

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM* vm, void*) {
  g_vm = vm;
  return JNI_VERSION_1_6;
}

JNIEXPORT jlong JNICALL Java_org_compkit_demo_CompkitNative_moosCreate(JNIEnv* env, jclass, jstring tokenizer_dir,
                                                                         jintArray buckets, jboolean has_outlier,
                                                                         jdouble outlier_weight, jobject scorer) {
  std::string dir;
  if (!utf8(env, tokenizer_dir, &dir)) return 0;
  if (buckets == nullptr || scorer == nullptr) {
    throw_compkit(env, "buckets and scorer must not be null");
    return 0;
  }
  std::vector<int32_t> b(static_cast<size_t>(env->GetArrayLength(buckets)));
  if (!b.empty()) env->GetIntArrayRegion(buckets, 0, static_cast<jsize>(b.size()), b.data());
  auto* h = new Handle();
  jclass scorer_cls = env->GetObjectClass(scorer);
  h->score = env->GetMethodID(scorer_cls, "score", "([I[I[F[F)V");
  env->DeleteLocalRef(scorer_cls);
  if (h->score == nullptr) {
    delete h;
    return 0;  // NoSuchMethodError is pending
  }
  h->scorer = env->NewGlobalRef(scorer);
  compkit_moos_config config = compkit_moos_default_config();
  config.outlier_weight = outlier_weight;
  ErrBuf err;
  compkit_status st = compkit_moos_create_callback(dir.c_str(), b.data(), static_cast<int32_t>(b.size()),
                                                   has_outlier ? 1 : 0, score_window, h, &config, &h->moos, err.text,
                                                   sizeof err.text);
  if (st != COMPKIT_OK) {
    throw_compkit(env, err.text);
    env->DeleteGlobalRef(h->scorer);
    delete h;
    return 0;
  }
  return reinterpret_cast<jlong>(h);
}

JNIEXPORT void JNICALL Java_org_compkit_demo_CompkitNative_moosDestroy(JNIEnv* env, jclass, jlong handle) {
  auto* h = reinterpret_cast<Handle*>(handle);
  if (h == nullptr) return;
  compkit_moos_destroy(h->moos);
  env->DeleteGlobalRef(h->scorer);
  delete h;
}

JNIEXPORT jobject JNICALL Java_org_compkit_demo_CompkitNative_moosCompress(JNIEnv* env, jclass, jlong handle, jstring text,
                                                                             jdouble rate, jint target_token,
                                                                             jobjectArray force_tokens,
                                                                             jboolean force_reserve_digit,
                                                                             jboolean drop_consecutive,
                                                                             jboolean token_to_word_first) {
  Handle* h = handle_of(env, handle);
  std::string t;
  if (h == nullptr || !utf8(env, text, &t)) return nullptr;
  std::vector<std::string> force;
  const jsize n_force = force_tokens == nullptr ? 0 : env->GetArrayLength(force_tokens);
  for (jsize i = 0; i < n_force; ++i) {
    auto s = static_cast<jstring>(env->GetObjectArrayElement(force_tokens, i));
    force.emplace_back();
    bool ok = utf8(env, s, &force.back());
    env->DeleteLocalRef(s);
    if (!ok) return nullptr;
  }
  std::vector<const char*> force_c;
  for (const auto& f : force) force_c.push_back(f.c_str());
  compkit_moos_options opt = compkit_moos_default_options();
  opt.rate = rate;
  opt.target_token = target_token;
  opt.force_tokens = force_c.empty() ? nullptr : force_c.data();
  opt.n_force_tokens = static_cast<int32_t>(force_c.size());
  opt.force_reserve_digit = force_reserve_digit ? 1 : 0;
  opt.drop_consecutive = drop_consecutive ? 1 : 0;
  opt.token_to_word_first = token_to_word_first ? 1 : 0;
  compkit_moos_result* r = nullptr;
  ErrBuf err;
  if (compkit_moos_compress(h->moos, t.c_str(), &opt, &r, err.text, sizeof err.text) != COMPKIT_OK) {
    throw_compkit(env, err.text);
    return nullptr;
  }

  jclass string_cls = env->FindClass("java/lang/String");
  jobjectArray words = env->NewObjectArray(r->n_words, string_cls, nullptr);
  jbooleanArray kept = env->NewBooleanArray(r->n_words);
  for (int32_t i = 0; words != nullptr && kept != nullptr && i < r->n_words; ++i) {
    jstring w = java_string(env, r->words[i]);
    env->SetObjectArrayElement(words, i, w);
    env->DeleteLocalRef(w);
    jboolean k = r->kept[i] ? JNI_TRUE : JNI_FALSE;
    env->SetBooleanArrayRegion(kept, i, 1, &k);
  }
  const char* names[] = {"tokenize", "forward", "postprocess", "total"};
  const jdouble ms[] = {r->tokenize_ms, r->forward_ms, r->postprocess_ms, r->total_ms};
  jobjectArray stage_names = env->NewObjectArray(4, string_cls, nullptr);
  jdoubleArray stage_ms = env->NewDoubleArray(4);
  for (jsize i = 0; stage_names != nullptr && i < 4; ++i) {
    jstring name = env->NewStringUTF(names[i]);
    env->SetObjectArrayElement(stage_names, i, name);
    env->DeleteLocalRef(name);
  }
  if (stage_ms != nullptr) env->SetDoubleArrayRegion(stage_ms, 0, 4, ms);
  jstring compressed = java_string(env, r->compressed);
  const jint origin = r->origin_tokens, kept_tokens = r->compressed_tokens, windows = r->n_windows;
  compkit_moos_result_free(r);
  if (env->ExceptionCheck()) return nullptr;

  jclass result_cls = env->FindClass("org/compkit/demo/MoosResult");
  if (result_cls == nullptr) return nullptr;
  jmethodID ctor = env->GetMethodID(result_cls, "<init>", "(Ljava/lang/String;[Ljava/lang/String;[ZIII[Ljava/lang/String;[D)V");
  if (ctor == nullptr) return nullptr;
  return env->NewObject(result_cls, ctor, compressed, words, kept, origin, kept_tokens, windows, stage_names, stage_ms);
}

JNIEXPORT jintArray JNICALL Java_org_compkit_demo_CompkitNative_evoSelect(JNIEnv* env, jclass, jfloatArray scores, jint k,
                                                                            jdouble ratio) {
  if (scores == nullptr) {
    throw_compkit(env, "scores is null: pass the EvoComp model's logits");
    return nullptr;
  }
  std::vector<float> s(static_cast<size_t>(env->GetArrayLength(scores)));
  if (!s.empty()) env->GetFloatArrayRegion(scores, 0, static_cast<jsize>(s.size()), s.data());
  std::vector<int32_t> kept(s.size() + 1);  // the header's contract: room for n indices
  int32_t n_kept = 0;
  ErrBuf err;
  if (compkit_evo_select(s.data(), static_cast<int32_t>(s.size()), k, ratio, kept.data(), &n_kept, err.text,
                         sizeof err.text) != COMPKIT_OK) {
    throw_compkit(env, err.text);
    return nullptr;
  }
  jintArray out = env->NewIntArray(n_kept);
  if (out != nullptr && n_kept > 0) env->SetIntArrayRegion(out, 0, n_kept, kept.data());
  return out;
}

}  // extern "C"
