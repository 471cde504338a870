/* Frame types and limits of the agent protocol (docs/protocol.md); the Python side mirrors them in
 * microsandbox/sandbox/protocol.py. */
#ifndef MSB_AGENT_PROTOCOL_H
#define MSB_AGENT_PROTOCOL_H

enum {
    MSB_FRAME_EXEC = 1,
    MSB_FRAME_STDIN = 2,
    MSB_FRAME_STDIN_EOF = 3,
    MSB_FRAME_SIGNAL = 4,
    MSB_FRAME_STARTED = 10,
    MSB_FRAME_STDOUT = 11,
    MSB_FRAME_STDERR = 12,
    MSB_FRAME_EXIT = 13,
    MSB_FRAME_ERROR = 14,
};

#define MSB_MAX_PAYLOAD (1u << 20)
#define MSB_MAX_STRING (64u << 10)
#define MSB_MAX_ARGS 4096u

#endif
