package io.consulrs

import io.consulrs.ffi.ConsulFfiException

/**
 * The SDK's failure kinds, one per [ConsulException] subclass; [value] is the SDK's stable
 * numeric code (the C library's status codes), [name] its string form (`"NOT_FOUND"`, as the
 * Node package's `err.code`).
 */
enum class ErrorCode(val value: Int) {
    /** The caller passed something invalid (HTTP 400 or a local check). */
    INVALID_ARGUMENT(1),
    /** The addressed object does not exist. */
    NOT_FOUND(2),
    /** ACL refusal (HTTP 403, or 401 "ACL support disabled"); the message keeps the agent's text. */
    PERMISSION_DENIED(3),
    /** A transaction rolled back (HTTP 409) or a lock is held elsewhere. */
    CONFLICT(4),
    /** No answer, or no change, in time. */
    TIMEOUT(5),
    /** The agent could not be reached. */
    CONNECTION(6),
    /** The cluster has no leader. */
    NO_LEADER(7),
    /** The agent answered with a server error (HTTP 5xx). */
    UNAVAILABLE(8),
    /** The operation was cancelled. */
    CANCELLED(9),
    /** The embedded agent, the client or the handle is shut down. */
    SHUTDOWN(10),
    /** Used in a process forked after the object was made. */
    FORKED(11),
    /** A blocking call was made where it would deadlock. */
    WOULD_DEADLOCK(12),
    /** A bug or an unexpected answer (a Rust panic caught at the boundary lands here too). */
    INTERNAL(13),
    /** A request or value is over a size limit (HTTP 413). */
    TOO_LARGE(14);

    companion object {
        /** The code for its string form; [INTERNAL] for one this version does not know. */
        @JvmStatic
        fun parse(name: String): ErrorCode = entries.firstOrNull { it.name == name } ?: INTERNAL
    }
}

/**
 * Every failure consul-rs reports: the SDK's [code], its message (identical in every binding) and,
 * when an agent answered, its [httpStatus]. Unchecked, so Java callers catch it where they want.
 */
open class ConsulException(
    message: String,
    /** The kind of failure. */
    val code: ErrorCode,
    /** The agent's HTTP status, when one answered. */
    val httpStatus: Int? = null,
    cause: Throwable? = null,
) : RuntimeException(message, cause)

/** A value was refused (before anything was sent, or by the agent with HTTP 400); the message names it. */
class InvalidArgumentException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.INVALID_ARGUMENT, httpStatus)

/** The addressed object does not exist. */
class NotFoundException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.NOT_FOUND, httpStatus)

/** ACL refusal. */
class PermissionDeniedException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.PERMISSION_DENIED, httpStatus)

/** A transaction rolled back or a lock is held elsewhere. */
class ConflictException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.CONFLICT, httpStatus)

/** No answer or no change in time. */
class ConsulTimeoutException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.TIMEOUT, httpStatus)

/** The agent could not be reached. */
class ConsulConnectionException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.CONNECTION, httpStatus)

/** The cluster has no leader. */
class NoLeaderException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.NO_LEADER, httpStatus)

/** The agent answered with a server error. */
class UnavailableException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.UNAVAILABLE, httpStatus)

/** The operation was cancelled. */
class CancelledException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.CANCELLED, httpStatus)

/** The client, handle or embedded agent is shut down. */
class ShutdownException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.SHUTDOWN, httpStatus)

/** An object was used in a process forked after it was made. */
class ForkedException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.FORKED, httpStatus)

/** A blocking call was made where it would deadlock. */
class WouldDeadlockException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.WOULD_DEADLOCK, httpStatus)

/** A bug or an unexpected answer; a panic in the native library is reported as this. */
class ConsulInternalException(message: String, httpStatus: Int? = null, cause: Throwable? = null) :
    ConsulException(message, ErrorCode.INTERNAL, httpStatus, cause)

/** A request or value is over a size limit. */
class TooLargeException(message: String, httpStatus: Int? = null) :
    ConsulException(message, ErrorCode.TOO_LARGE, httpStatus)

/** The one mapping from an SDK error (code string, message, status) to the hierarchy. */
internal fun consulException(code: String, message: String, httpStatus: Int?): ConsulException =
    when (ErrorCode.parse(code)) {
        ErrorCode.INVALID_ARGUMENT -> InvalidArgumentException(message, httpStatus)
        ErrorCode.NOT_FOUND -> NotFoundException(message, httpStatus)
        ErrorCode.PERMISSION_DENIED -> PermissionDeniedException(message, httpStatus)
        ErrorCode.CONFLICT -> ConflictException(message, httpStatus)
        ErrorCode.TIMEOUT -> ConsulTimeoutException(message, httpStatus)
        ErrorCode.CONNECTION -> ConsulConnectionException(message, httpStatus)
        ErrorCode.NO_LEADER -> NoLeaderException(message, httpStatus)
        ErrorCode.UNAVAILABLE -> UnavailableException(message, httpStatus)
        ErrorCode.CANCELLED -> CancelledException(message, httpStatus)
        ErrorCode.SHUTDOWN -> ShutdownException(message, httpStatus)
        ErrorCode.FORKED -> ForkedException(message, httpStatus)
        ErrorCode.WOULD_DEADLOCK -> WouldDeadlockException(message, httpStatus)
        ErrorCode.INTERNAL -> ConsulInternalException(message, httpStatus)
        ErrorCode.TOO_LARGE -> TooLargeException(message, httpStatus)
    }

/**
 * Runs one call into the native library and maps what it throws, once: the SDK's errors to the
 * [ConsulException] hierarchy, a Rust panic (uniffi's `InternalException`) to
 * [ConsulInternalException]. Coroutine cancellation passes through untouched.
 */
internal inline fun <T> ffi(block: () -> T): T =
    try {
        block()
    } catch (e: ConsulFfiException.Failure) {
        throw consulException(e.code, e.detail, e.httpStatus?.toInt())
    } catch (e: io.consulrs.ffi.InternalException) {
        throw ConsulInternalException("native library panicked: ${e.message}", cause = e)
    }
