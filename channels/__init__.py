"""The ways an approver is reached and answers: one folder per channel (email/, slack/, …), each
an implementation of channels.base.Channel, listed in channels.registry."""
