import { describe, expect, it } from 'vitest';
import { ApiError } from './api';
import { manageErrorText } from './chat';

describe('refusals of a change to a conversation, in words', () => {
  it('names what the role, the last owner or a direct conversation stopped', () => {
    expect(manageErrorText(new ApiError(403, 'not_allowed', 'only owners and admins remove members'))).toBe(
      'Your role in this conversation does not allow that.',
    );
    expect(manageErrorText(new ApiError(409, 'last_owner', 'x'))).toMatch(/only owner/);
    expect(manageErrorText(new ApiError(409, 'direct_conversation', 'x'))).toMatch(/direct conversation/);
    expect(manageErrorText(new ApiError(404, 'no_such_member', 'x'))).toMatch(/not a member/);
    expect(manageErrorText(new ApiError(404, 'not_found', 'x'))).toMatch(/gone/);
  });

  it('passes the server\'s reason on for invalid input and anything else', () => {
    expect(manageErrorText(new ApiError(400, 'invalid_request', 'title must be a string of 1 to 256 bytes of UTF-8'))).toBe(
      'Refused: title must be a string of 1 to 256 bytes of UTF-8.',
    );
    expect(manageErrorText(new ApiError(0, 'network', 'Cannot reach the server.'))).toBe('Cannot reach the server.');
    expect(manageErrorText(new Error('boom'))).toBe('boom');
  });
});
